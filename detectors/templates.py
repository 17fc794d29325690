"""Turn a log line into its template by masking the variable parts.

Regexes rather than Drain3: masking must be a pure function of one line (Drain3's templates
drift as it sees more lines, which would invalidate the embedding cache and make scores depend
on what was seen before). The patterns run as one alternation in a single `re.sub` pass, which
is what keeps masking far cheaper than the encoder.
"""

from __future__ import annotations

import re
from functools import lru_cache

# Order matters: the first alternative that matches at a position wins, so the most
# specific shapes (timestamps, UUIDs, IPs) come before the generic number.
_VARIABLE_PATTERNS: tuple[tuple[str, str], ...] = (
    ("TS", r"\d{4}-\d{2}-\d{2}[T -]\d{2}[:.]\d{2}[:.]\d{2}(?:[.,]\d+)?(?:Z|[+-]\d{2}:?\d{2})?"),
    ("TS", r"\d{4}[./]\d{2}[./]\d{2}(?:-\d{2}\.\d{2}\.\d{2}(?:\.\d+)?)?"),
    ("TS", r"\b\d{2}:\d{2}:\d{2}(?:[.,]\d+)?\b"),
    ("UUID", r"\b[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}\b"),
    ("IP", r"(?<![\w.])\d{1,3}(?:\.\d{1,3}){3}(?::\d{1,5})?(?![\w.])"),
    ("BLK", r"\bblk_-?\d+\b"),
    ("HEX", r"\b0[xX][0-9a-fA-F]+\b"),
    # Hex runs only count when long enough and holding a digit, so "deadbeef"-like words stay,
    # while commit hashes and container ids go.
    ("HEX", r"\b(?=[0-9a-fA-F]*\d)(?=[0-9a-fA-F]*[a-fA-F])[0-9a-fA-F]{8,}\b"),
    ("PATH", r"(?<![\w])(?:/[\w.@%+-]+){2,}/?"),
    # Identifiers that start with a letter and hold a digit: req-8f3a21, user_1042, R02-M1-N0-C:J12.
    ("ID", r"\b(?=[\w:.-]*\d)[A-Za-z][A-Za-z0-9]*(?:[-_:.][A-Za-z0-9]+)*\b"),
    ("NUM", r"(?<![\w.])[-+]?\d+(?:\.\d+)*(?:[a-zA-Z%]{1,3})?(?![\w.])"),
)

_COMBINED = re.compile("|".join(f"(?P<{name}{i}>{rx})" for i, (name, rx) in enumerate(_VARIABLE_PATTERNS)))
_GROUP_TOKEN = {f"{name}{i}": f"<{name}>" for i, (name, _) in enumerate(_VARIABLE_PATTERNS)}
_SPACES = re.compile(r"\s+")

MAX_TEMPLATE_CHARS = 512


def _replace(match: re.Match[str]) -> str:
    assert match.lastgroup is not None  # every alternative is a named group
    return _GROUP_TOKEN[match.lastgroup]


def mask_line(line: str) -> str:
    """Return the template of one log line: variables become <TS>, <IP>, <NUM>, ... tokens.

    >>> mask_line("2026-03-04T10:15:02Z INFO [api] req-8f3a21 from 10.0.0.7 took 123ms")
    '<TS> INFO [api] <ID> from <IP> took <NUM>'
    """
    masked = _COMBINED.sub(_replace, line)
    return _SPACES.sub(" ", masked).strip()[:MAX_TEMPLATE_CHARS]


@lru_cache(maxsize=65536)
def _mask_cached(line: str) -> str:
    return mask_line(line)


def mask_lines(lines: list[str] | tuple[str, ...]) -> list[str]:
    """Mask many lines. Repeated raw lines (frequent in real streams) hit a bounded cache."""
    return [_mask_cached(line) for line in lines]
