"""Input limits and normalisation for every tool. Enforced here, once, whatever the surface.

Log text arrives from chat messages, webhooks, MCP calls and files: it may be empty, huge,
binary, or not UTF-8. Each tool takes lines through `prepare_lines`, which either returns clean
lines within the limits or raises `ToolInputError` with a message that says what to change.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from tools.errors import ToolInputError

# Control characters other than tab: they carry no meaning in a log line and confuse terminals,
# Slack blocks and LLM tokenisers alike.
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")


@dataclass(frozen=True)
class InputLimits:
    """How much log text one tool call accepts."""

    max_lines: int = 5_000
    max_line_chars: int = 4_000
    max_total_bytes: int = 2_000_000

    def __post_init__(self) -> None:
        if min(self.max_lines, self.max_line_chars, self.max_total_bytes) < 1:
            raise ValueError("input limits must be positive")


def split_text(text: str) -> list[str]:
    """Log text as lines (any newline convention)."""
    return text.splitlines()


def prepare_lines(lines: Sequence[str] | str, limits: InputLimits) -> list[str]:
    """Clean, non-blank lines within `limits`, or a `ToolInputError` naming the limit."""
    raw = split_text(lines) if isinstance(lines, str) else list(lines)
    if len(raw) > limits.max_lines:
        raise ToolInputError(
            f"too many lines: {len(raw)} > {limits.max_lines}; send the lines around the problem "
            "(LOGTRIAGE_MAX_LINES raises the limit)"
        )
    total = 0
    kept: list[str] = []
    for number, line in enumerate(raw, start=1):
        if not isinstance(line, str):
            raise ToolInputError(f"line {number} is not a string")
        if len(line) > limits.max_line_chars:
            raise ToolInputError(
                f"line {number} has {len(line)} characters > {limits.max_line_chars}; "
                "split or trim it (LOGTRIAGE_MAX_LINE_CHARS raises the limit)"
            )
        total += len(line.encode("utf-8", errors="replace")) + 1
        if total > limits.max_total_bytes:
            raise ToolInputError(
                f"input is over {limits.max_total_bytes} bytes; send fewer lines "
                "(LOGTRIAGE_MAX_INPUT_BYTES raises the limit)"
            )
        # Lone surrogates (from undecodable bytes) are replaced so every later encode succeeds.
        clean = _CONTROL.sub(" ", line.encode("utf-8", errors="replace").decode("utf-8")).rstrip()
        if clean.strip():
            kept.append(clean)
    if not kept:
        raise ToolInputError("no log lines: the input is empty or blank; pass the log lines to examine")
    return kept
