"""Tests for assistant.redaction: secrets become typed placeholders, ordinary log text stays."""

from __future__ import annotations

import random

import pytest

from assistant.redaction import (
    PLACEHOLDER_RE,
    RedactionPolicy,
    Redactor,
    placeholder,
    redact,
    redact_lines,
)

GITHUB_PAT = "ghp_" + "A1b2C3d4E5" * 4
OPENAI_KEY = "sk-proj-" + "Zx9" * 12
JWT = "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.SflKxwRJSMeKKF2QT4fwpMeJf36POk6yJV_adQssw5c"
PEM_BODY = ["MIIEowIBAAKCAQEA7bq9sZ3hT0mYl+Qx", "c2VjcmV0LWtleS1ib2R5LWxpbmUtdHdv=="]

SECRETS = [
    ("password=hunter2", "password=[REDACTED:password]"),
    ("login failed passwd: hunter2 user=bob", "login failed passwd: [REDACTED:password] user=bob"),
    ("mysql pwd=s3cr3t!", "mysql pwd=[REDACTED:password]"),
    ("DB_PASSWORD='correct horse'", "DB_PASSWORD='[REDACTED:password]'"),
    ("spring.datasource.password = p@ss", "spring.datasource.password = [REDACTED:password]"),
    ("secret=abc123", "secret=[REDACTED:secret]"),
    ("client_secret: q8Zr-77", "client_secret: [REDACTED:secret]"),
    (
        '{"user": "bob", "password": "hunter2", "ok": false}',
        '{"user": "bob", "password": "[REDACTED:password]", "ok": false}',
    ),
    (
        'msg="{\\"password\\": \\"hunter2\\"}"',
        'msg="{\\"password\\": \\"[REDACTED:password]\\"}"',
    ),
    ("Authorization: Bearer abc.def-123456", "Authorization: Bearer [REDACTED:token]"),
    ("authorization: bearer " + JWT, "authorization: bearer [REDACTED:token]"),
    ("Authorization: Basic dXNlcjpwYXNz", "Authorization: Basic [REDACTED:credentials]"),
    ('"Authorization": "Bearer abc123xyz"', '"Authorization": "Bearer [REDACTED:token]"'),
    ("GET /cb?token=abcdef123456&page=2", "GET /cb?token=[REDACTED:token]&page=2"),
    ("access_token=ya29.a0AfH6SMBx", "access_token=[REDACTED:token]"),
    ("X-Auth-Token: 0f8fad5bd9cb469f", "X-Auth-Token: [REDACTED:token]"),
    ("api_key=9f8e7d6c5b4a", "api_key=[REDACTED:api_key]"),
    ("apikey: 9f8e7d6c5b4a", "apikey: [REDACTED:api_key]"),
    ("x-api-key: 9f8e7d6c5b4a", "x-api-key: [REDACTED:api_key]"),
    ("OPENAI_API_KEY=" + OPENAI_KEY, "OPENAI_API_KEY=[REDACTED:api_key]"),
    ("using key AKIAIOSFODNN7EXAMPLE for s3", "using key [REDACTED:aws_access_key] for s3"),
    (
        "aws_secret_access_key=wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
        "aws_secret_access_key=[REDACTED:secret]",
    ),
    ("cloned with " + GITHUB_PAT, "cloned with [REDACTED:github_token]"),
    ("cloned with gho_" + "x" * 36, "cloned with [REDACTED:github_token]"),
    ("cloned with github_pat_11ABCDEFG0" + "y" * 40, "cloned with [REDACTED:github_token]"),
    ("slack xoxb-123456789012-abcdefABCDEF", "slack [REDACTED:slack_token]"),
    ("calling openai with " + OPENAI_KEY, "calling openai with [REDACTED:api_key]"),
    ("session " + JWT + " expired", "session [REDACTED:jwt] expired"),
    ("curl -H 'bearer 8f14e45fceea167a'", "curl -H '[REDACTED:token]'"),
    ("dsn=postgres://admin:s3cr3t@db:5432/app", "dsn=postgres://admin:[REDACTED:password]@db:5432/app"),
    ("redis://:hunter2@cache:6379/0", "redis://:[REDACTED:password]@cache:6379/0"),
    ("Cookie: session=abc; csrftoken=def", "Cookie: [REDACTED:cookie]"),
    ("notify bob.smith+oncall@example.co.uk now", "notify [REDACTED:email] now"),
    ("mail to ops@example.com.", "mail to [REDACTED:email]."),
    (
        "key=-----BEGIN RSA PRIVATE KEY-----\\nMIIEow\\n-----END RSA PRIVATE KEY----- loaded",
        "key=[REDACTED:private_key] loaded",
    ),
]

UNCHANGED = [
    "2026-03-04T10:15:02.123Z INFO payment-svc started in 1.25s",
    "at 12:01:02 ok",
    "request_id=123e4567-e89b-12d3-a456-426614174000 status=200",
    "deployed commit 3f2a9c1d8e7b6a5f4e3d2c1b0a9f8e7d6c5b4a39",
    "GET /api/v1/orders took 250ms (p99 1.2s)",
    "token bucket refilled: 40 tokens available",
    "password reset requested for user 42",
    "listening on 0.0.0.0 port :8080",
    "upgrading openssl 3.0.13 -> 3.0.14, app v1.2.3",
    "llm usage max_tokens=256 prompt_tokens=1200 completion_tokens=80",
    "JSON parse error: unexpected token: '}' at line 3",
    "Bearer token missing from request",
    "flags has_password=true password_set=false pwd=*** token=null",
    "tokenizer=bpe secret_rotation_days=30 keyspace=orders",
    "https://example.com:8443/path?q=1",
    "std::vector<int> overflow in Foo::bar",
    "caf\u00e9 \u2603 \u65e5\u672c\u8a9e ok",
]


@pytest.mark.parametrize(("text", "expected"), SECRETS, ids=[expected for _, expected in SECRETS])
def test_each_kind_of_secret_becomes_a_typed_placeholder_that_keeps_its_key(text: str, expected: str) -> None:
    assert redact(text) == expected


@pytest.mark.parametrize("text", UNCHANGED)
def test_ordinary_log_content_is_left_as_it_was(text: str) -> None:
    assert redact(text) == text


@pytest.mark.parametrize(("text", "expected"), SECRETS)
def test_redacting_twice_changes_nothing(text: str, expected: str) -> None:
    policy = RedactionPolicy(redact_ips=True)
    once = redact(text, policy)
    assert redact(once, policy) == once


def test_ip_addresses_stay_unless_the_policy_asks_for_them() -> None:
    line = "conn from 10.0.12.7:5432 and [2001:db8::8a2e:370:7334]:443 via fe80::1%eth0 at 12:30:45"
    assert redact(line) == line
    assert redact(line, RedactionPolicy(redact_ips=True)) == (
        "conn from [REDACTED:ip]:5432 and [[REDACTED:ip]]:443 via [REDACTED:ip] at 12:30:45"
    )


@pytest.mark.parametrize(
    "text",
    [
        "build 1.2.3 at 12:30:45.123",
        "mac 00:1a:2b:3c:4d:5e up",
        "v10.0.0.1-rc1",
        "999.1.1.1 is not an address",
        "a::b and :: are code",
    ],
)
def test_ip_redaction_leaves_versions_times_and_macs(text: str) -> None:
    assert redact(text, RedactionPolicy(redact_ips=True)) == text


def test_an_ipv4_mapped_ipv6_address_is_redacted_whole() -> None:
    assert (
        redact("peer ::ffff:192.0.2.1 closed", RedactionPolicy(redact_ips=True))
        == "peer [REDACTED:ip] closed"
    )


def test_a_pem_block_in_one_text_keeps_its_line_count() -> None:
    text = "\n".join(
        ["loading key", "-----BEGIN PRIVATE KEY-----", *PEM_BODY, "-----END PRIVATE KEY-----", "done"]
    )
    assert redact(text).split("\n") == ["loading key", *[placeholder("private_key")] * 4, "done"]


def test_a_pem_block_across_lines_is_redacted_line_for_line() -> None:
    lines = [
        "loading key",
        "-----BEGIN RSA PRIVATE KEY-----",
        *PEM_BODY,
        "-----END RSA PRIVATE KEY----- then password=hunter2",
        "done",
    ]
    assert redact_lines(lines) == [
        "loading key",
        "[REDACTED:private_key]",
        "[REDACTED:private_key]",
        "[REDACTED:private_key]",
        "[REDACTED:private_key] then password=[REDACTED:password]",
        "done",
    ]


def test_a_pem_block_cut_off_before_its_end_is_redacted_through_its_base64_lines_only() -> None:
    lines = ["-----BEGIN OPENSSH PRIVATE KEY-----", *PEM_BODY, "2026-03-04 next event"]
    assert redact_lines(lines) == [*[placeholder("private_key")] * 3, "2026-03-04 next event"]


def test_redact_lines_returns_one_line_per_input_line_even_when_a_line_holds_newlines() -> None:
    assert redact_lines(["first\nsecond password=x1", "third"]) == [
        "first\nsecond password=[REDACTED:password]",
        "third",
    ]
    assert redact_lines([]) == []


def test_an_extra_pattern_redacts_its_secret_group_or_the_whole_match() -> None:
    policy = RedactionPolicy(extra_patterns=(r"sess=(?P<secret>\w+)", r"ACCT-\d{6}"))
    assert redact("sess=abc123 for ACCT-004211", policy) == "sess=[REDACTED:custom] for [REDACTED:custom]"
    assert redact("sess=abc123 for ACCT-004211") == "sess=abc123 for ACCT-004211"


def test_an_invalid_extra_pattern_is_a_config_error_naming_the_pattern() -> None:
    with pytest.raises(ValueError, match=r"extra_patterns: invalid regex '\(unclosed'"):
        Redactor(RedactionPolicy(extra_patterns=("(unclosed",)))


def test_placeholder_re_finds_every_placeholder_written() -> None:
    redacted = [redact(text) for text, _ in SECRETS]
    assert all(PLACEHOLDER_RE.search(text) for text in redacted)
    assert not any(PLACEHOLDER_RE.search(text) for text in UNCHANGED)


def _random_text(rng: random.Random) -> str:
    # Mix fragments that drive rules to their edges with arbitrary code points, including
    # control characters and lone surrogates.
    fragments = [
        "password=",
        '"token": "',
        "Authorization: Bearer ",
        "://",
        ":@",
        "-----BEGIN RSA PRIVATE KEY-----",
        "-----END RSA PRIVATE KEY-----",
        "eyJ",
        ".",
        "::",
        "@",
        '\\"',
        "\n",
        "[REDACTED:",
        "sk-",
    ]
    parts: list[str] = []
    for _ in range(rng.randint(0, 30)):
        if rng.random() < 0.4:
            parts.append(rng.choice(fragments))
        else:
            parts.append("".join(chr(rng.randint(0, 0x10FFFF)) for _ in range(rng.randint(1, 12))))
    return "".join(parts)


def test_random_unicode_never_raises_and_keeps_line_count_and_idempotence() -> None:
    rng = random.Random(20260304)
    redactor = Redactor(RedactionPolicy(redact_ips=True, extra_patterns=(r"k=(?P<secret>\S+)",)))
    for _ in range(2000):
        text = _random_text(rng)
        once = redactor.redact(text)
        assert once.count("\n") == text.count("\n")
        assert redactor.redact(once) == once, text
