"""Secret redaction for log text on its way to an LLM, which may be remote.

Every secret becomes a typed placeholder such as ``[REDACTED:password]``. Where a secret sits
behind a key (``password=...``, ``Authorization: Bearer ...``, ``https://user:pass@host``) the key
stays, so the redacted log still reads as a log: ``password=[REDACTED:password]``.

Design constraints, each of which a test pins:

* Idempotent: a placeholder never matches a rule, so redacting twice changes nothing.
* Line-preserving: no replacement changes the number of lines, so line numbers and
  :func:`redact_lines` indices still point at the same log lines.
* Linear: each rule is one precompiled regex applied in one pass; rules anchor their starts
  with look-behinds and use possessive quantifiers so that no input backtracks quadratically.
* Total: it never raises on arbitrary text (unicode, control characters, lone surrogates).
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from functools import lru_cache

PLACEHOLDER_RE = re.compile(r"\[REDACTED:[a-z_]+\]")
"""Matches any placeholder this module writes; useful to count or to strip redactions."""

_NOT_YET = r"(?!\\?[\"']?\[REDACTED:)"  # a value that is already a placeholder is left alone
_VALUE = (
    r"(?P<value>"
    r"\\\"(?:(?!\\\").)*+\\\""  # \"...\" : a quoted value inside a JSON-encoded string
    r"|\"(?:[^\"\\\n]|\\[^\n])*+\""  # "..." with backslash escapes
    r"|'[^'\n]*+'"  # '...'
    r"|[^\s,;&'\"{}]++"  # bare: up to whitespace or a separator
    r")"
)
# A key as it appears in `k=v`, `k: v`, `"k": "v"`, `\"k\": \"v\"`, `--k=v`, `a.b.k=v`, `X-K: v`.
_KEY_HEAD = r"(?<![\w.-])[\w.-]*?"
_KEY_TAIL = r"(?:\\?[\"'])?[ \t]*+[:=][ \t]*+"

# (kind, key regex, needles). Keys must end exactly at the keyword, so `max_tokens=`,
# `password_reset=` and `tokenizer=` are left alone, while prefixes (`db_password`,
# `x-auth-token`) are caught. A rule runs only when one of its needles is in the lower-cased text.
_KEYED_SECRETS: tuple[tuple[str, str, tuple[str, ...]], ...] = (
    ("password", r"(?:password|passwd|passphrase|pwd)", ("pass", "pwd")),
    ("secret", r"secret(?:[_-]?access[_-]?key|[_-]?key)?", ("secret",)),
    ("api_key", r"api[_-]?key", ("key",)),
    ("private_key", r"private[_-]?key", ("private",)),
    ("token", r"token", ("token",)),
)
# Values that are not secrets but flags or someone else's masking: `password_set=true`, `pwd=***`.
_NON_SECRET_VALUES = frozenset({"true", "false", "null", "none", "nil", "undefined"})
# Real tokens are long; the floor keeps parser errors like `unexpected token: '}'` readable.
_MIN_TOKEN_CHARS = 8

_PEM_RE = (
    r"-----BEGIN [A-Z0-9 ]*PRIVATE KEY(?: BLOCK)?-----"
    # The whole block (never across another BEGIN, which keeps many cut-off blocks linear), or,
    # when the END was cut off, the rest of the line and the base64 lines that follow.
    r"(?:(?:(?!-----BEGIN ).)*?-----END [A-Z0-9 ]*PRIVATE KEY(?: BLOCK)?-----"
    r"|[^\n]*+(?:\n[ \t]*[A-Za-z0-9+/=]++[ \t]*(?=\n|\Z))*+)"
)
_URL_CREDENTIALS_RE = (
    r"(?P<prefix>(?<![A-Za-z0-9+.-])[A-Za-z][A-Za-z0-9+.-]*+://[^\s:/@?#\[\]]*+:)"
    + _NOT_YET
    + r"(?P<value>[^\s/@?#\[\]]++)(?=@)"  # RFC 3986: `[`, `]` in a password are percent-encoded
)
_AUTH_SCHEMES = r"(?:bearer|basic|digest|token|negotiate|apikey|key)"
_AUTHORIZATION_RE = (
    r"(?P<prefix>(?<![\w-])(?:proxy-)?authorization" + _KEY_TAIL + r"(?:\\?[\"'])?"
    r"(?P<scheme>" + _AUTH_SCHEMES + r"[ \t]+)?+)" + _NOT_YET + r"(?P<value>[^\s\"'\\,;]++)"
)
_COOKIE_RE = (
    r"(?P<prefix>(?<![\w-])(?:set-)?cookie(?:\\?[\"'])?[ \t]*+:[ \t]*+)"
    + _NOT_YET
    + r"(?P<value>[^\s\"\\][^\r\n\"\\]*+)"
)
_EMAIL_RE = (
    r"(?<![\w.%+-])[\w.%+-]++@[A-Za-z0-9-]++(?:\.[A-Za-z0-9-]++)*?\.[A-Za-z]{2,}+(?![\w-]|\.[A-Za-z0-9])"
)
_IPV4_OCTET = r"(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)"
_IPV4_RE = r"(?<![\w.\]])(?:" + _IPV4_OCTET + r"\.){3}" + _IPV4_OCTET + r"(?![\w]|\.\d)"
# A loose IPv6 shape, confirmed by `ipaddress` so clock times, MACs and `std::vector` stay put.
# Neither IP rule starts after `]` nor IPv6 ends before `[`: a placeholder must not expose a new
# address boundary to a second pass.
_IPV6_CANDIDATE_RE = r"(?<![\w:.\]])(?:[0-9A-Fa-f]{0,4}:){2,7}+(?:\d{1,3}(?:\.\d{1,3}){3}|[0-9A-Fa-f]{1,4})?(?:%[\w.]+)?(?![\w:\[]|\.\w)"
_TOKEN_SHAPES: tuple[tuple[str, str, tuple[str, ...]], ...] = (
    ("aws_access_key", r"(?<![A-Za-z0-9])(?:AKIA|ASIA)[0-9A-Z]{16}(?![A-Za-z0-9])", ("akia", "asia")),
    (
        "github_token",
        r"(?<![\w-])(?:gh[pousr]_[A-Za-z0-9]{36,}+|github_pat_[A-Za-z0-9_]{22,}+)",
        ("ghp_", "gho_", "ghu_", "ghs_", "ghr_", "github_pat_"),
    ),
    (
        "slack_token",
        r"(?<![\w-])(?:xox[abprs]-[A-Za-z0-9-]{10,}+|xapp-\d-[A-Za-z0-9-]{10,}+)",
        ("xox", "xapp-"),
    ),
    ("api_key", r"(?<![\w-])sk-[A-Za-z0-9_-]{20,}+", ("sk-",)),
    ("jwt", r"(?<![\w-])eyJ[A-Za-z0-9_-]++\.eyJ[A-Za-z0-9_-]++\.[A-Za-z0-9_-]*+", ("eyj",)),
    # A bare bearer credential outside an Authorization header; it must hold a digit, so that
    # prose such as "Bearer token missing" stays.
    (
        "token",
        r"(?<![\w-])(?i:bearer)[ \t]+" + _NOT_YET + r"(?=[A-Za-z._~+/=-]*\d)[A-Za-z0-9._~+/=-]{8,}+",
        ("bearer",),
    ),
)


def placeholder(kind: str) -> str:
    """The text a secret of `kind` is replaced with, e.g. ``[REDACTED:password]``."""
    return f"[REDACTED:{kind}]"


@dataclass(frozen=True)
class RedactionPolicy:
    """What to redact beyond the always-on secrets.

    `extra_patterns` are regexes for site-specific secrets; each match becomes
    ``[REDACTED:custom]``, or, when the pattern has a group named ``secret``, only that group does
    (so ``r"session=(?P<secret>\\w+)"`` keeps ``session=``).
    """

    redact_ips: bool = False
    extra_patterns: tuple[str, ...] = ()


Replacement = Callable[[re.Match[str]], str]


@dataclass(frozen=True)
class _Rule:
    kind: str
    pattern: re.Pattern[str]
    replace: Replacement
    needles: tuple[str, ...] = ()  # lower-case substrings one of which any match contains

    def applies_to(self, folded: str) -> bool:
        # A substring test is far cheaper than a regex pass, and most log text holds no needle.
        return not self.needles or any(needle in folded for needle in self.needles)

    def apply(self, text: str) -> str:
        return self.pattern.sub(self._keep_line_count, text)

    def _keep_line_count(self, match: re.Match[str]) -> str:
        replacement = self.replace(match)
        # A match that spans lines (a PEM block) leaves one placeholder per line it covered.
        extra_lines = match.group(0).count("\n") - replacement.count("\n")
        if extra_lines <= 0:
            return replacement
        return "\n".join([replacement, *[placeholder(self.kind)] * extra_lines])


def _whole(kind: str) -> Replacement:
    return lambda _match: placeholder(kind)


def _keep_prefix(kind: str) -> Replacement:
    return lambda match: match.group("prefix") + placeholder(kind)


def _keyed_value(kind: str) -> Replacement:
    def replace(match: re.Match[str]) -> str:
        value = match.group("value")
        for quote in ('\\"', '"', "'"):
            if len(value) >= 2 * len(quote) and value.startswith(quote) and value.endswith(quote):
                inner = value[len(quote) : -len(quote)]
                break
        else:
            quote, inner = "", value
        # Judge the value without placeholders a later rule may have put into it (`token=//::1`
        # becomes `token=//[REDACTED:ip]`), so a second pass decides as the first did.
        inner = PLACEHOLDER_RE.sub("", inner)
        too_short = kind == "token" and len(inner) < _MIN_TOKEN_CHARS
        if not inner or too_short or inner.lower() in _NON_SECRET_VALUES or set(inner) <= {"*"}:
            return match.group(0)
        return match.group("prefix") + quote + placeholder(kind) + quote

    return replace


def _authorization(match: re.Match[str]) -> str:
    scheme = (match.group("scheme") or "").strip().lower()
    kind = "credentials" if scheme in ("basic", "digest") else "token"
    return match.group("prefix") + placeholder(kind)


def _ipv6(match: re.Match[str]) -> str:
    candidate = match.group(0)
    try:
        ipaddress.IPv6Address(candidate)
    except ValueError:
        return candidate
    if not any(char.isdigit() for char in candidate):
        return candidate  # "::" and "a::b" are code far more often than addresses
    return placeholder("ip")


def _custom(match: re.Match[str]) -> str:
    if "secret" not in match.re.groupindex or match.group("secret") is None:
        return placeholder("custom")
    start, end = match.span("secret")
    offset = match.start()
    whole = match.group(0)
    return whole[: start - offset] + placeholder("custom") + whole[end - offset :]


def _build_rules(policy: RedactionPolicy) -> tuple[_Rule, ...]:
    rules: list[_Rule] = []
    for source in policy.extra_patterns:
        try:
            compiled = re.compile(source)
        except re.error as error:
            raise ValueError(f"RedactionPolicy.extra_patterns: invalid regex {source!r}: {error}") from error
        rules.append(_Rule("custom", compiled, _custom))
    # Order matters: structural rules that keep a key go first, so `api_key=sk-...` reads as an
    # api key rather than whatever shape its value has; bare shapes then catch what is left.
    pem = re.compile(_PEM_RE, re.DOTALL)
    rules.append(_Rule("private_key", pem, _whole("private_key"), ("private key",)))
    url = re.compile(_URL_CREDENTIALS_RE)
    rules.append(_Rule("password", url, _keep_prefix("password"), ("://",)))
    authorization = re.compile(_AUTHORIZATION_RE, re.IGNORECASE)
    rules.append(_Rule("token", authorization, _authorization, ("authorization",)))
    cookie = re.compile(_COOKIE_RE, re.IGNORECASE)
    rules.append(_Rule("cookie", cookie, _keep_prefix("cookie"), ("cookie",)))
    for kind, key, needles in _KEYED_SECRETS:
        keyed = r"(?P<prefix>" + _KEY_HEAD + key + _KEY_TAIL + r")" + _NOT_YET + _VALUE
        rules.append(_Rule(kind, re.compile(keyed, re.IGNORECASE), _keyed_value(kind), needles))
    for kind, shape, needles in _TOKEN_SHAPES:
        rules.append(_Rule(kind, re.compile(shape), _whole(kind), needles))
    rules.append(_Rule("email", re.compile(_EMAIL_RE), _whole("email"), ("@",)))
    if policy.redact_ips:
        # IPv6 first, so the IPv4 tail of `::ffff:192.0.2.1` does not split the address.
        rules.append(_Rule("ip", re.compile(_IPV6_CANDIDATE_RE), _ipv6))
        rules.append(_Rule("ip", re.compile(_IPV4_RE), _whole("ip")))
    return tuple(rules)


class Redactor:
    """The compiled rules for one policy; build once and reuse, it holds no other state."""

    def __init__(self, policy: RedactionPolicy = RedactionPolicy()) -> None:
        self.policy = policy
        self._rules = _build_rules(policy)

    def redact(self, text: str) -> str:
        # Needles are tested against the original text: replacements only add placeholders, which
        # no rule matches, so a rule skipped here could not have matched later either.
        folded = text.lower()
        for rule in self._rules:
            if rule.applies_to(folded):
                text = rule.apply(text)
        return text

    def redact_lines(self, lines: Iterable[str]) -> list[str]:
        """Redact lines as one text, so a PEM block spread over lines is caught; returns as many
        lines as it was given, each the redaction of the line at the same index."""
        items = list(lines)
        if not items:
            return []
        pieces = self.redact("\n".join(items)).split("\n")
        result: list[str] = []
        start = 0
        for line in items:
            span = line.count("\n") + 1  # a "line" that itself holds newlines is rebuilt whole
            result.append("\n".join(pieces[start : start + span]))
            start += span
        return result


@lru_cache(maxsize=16)
def _redactor(policy: RedactionPolicy) -> Redactor:
    return Redactor(policy)


def redact(text: str, policy: RedactionPolicy = RedactionPolicy()) -> str:
    """`text` with every secret replaced by a typed placeholder; see the module docstring."""
    return _redactor(policy).redact(text)


def redact_lines(lines: Iterable[str], policy: RedactionPolicy = RedactionPolicy()) -> list[str]:
    """Each of `lines` redacted, index for index; a multi-line PEM block is caught across lines."""
    return _redactor(policy).redact_lines(lines)
