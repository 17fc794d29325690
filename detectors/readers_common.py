"""Shared plumbing for the input readers: lazy line iteration, line cleaning, labels.

Everything here works on one line at a time so that every streaming format keeps its
memory bounded by the longest line, never by the file size.
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from typing import TYPE_CHECKING, BinaryIO, NamedTuple, TextIO

from detectors.sequences import InputFormatError

if TYPE_CHECKING:
    from _typeshed import WriteableBuffer

# A log line longer than this is truncated: real log lines are far shorter, and a
# multi-megabyte "line" is almost always binary garbage or a missing newline.
MAX_LINE_CHARS = 4096
# A JSON or CSV record holds a whole sequence, so it may be much longer than one log line,
# but it still needs a ceiling or a file without newlines would be read whole.
MAX_RECORD_CHARS = 8 * 1024 * 1024

# Whitespace controls become a space (they separate words); every other control character,
# lone surrogate (from JSON "\ud800" escapes; it cannot be encoded for printing) and
# Unicode line/paragraph separator becomes U+FFFD so the line stays printable and one line.
_SPACE_CONTROLS = "\t\n\v\f\r\x1c\x1d\x1e\x85\u2028\u2029"
_CLEAN_TABLE: dict[int, str] = {
    **{cp: "\ufffd" for cp in (*range(0x00, 0x20), *range(0x7F, 0xA0), *range(0xD800, 0xE000))},
    **{ord(ch): " " for ch in _SPACE_CONTROLS},
}

LABEL_WORDS: dict[str, int] = {
    "0": 0,
    "1": 1,
    "正常": 0,
    "异常": 1,
    "normal": 0,
    "anomalous": 1,
    "abnormal": 1,
    "anomaly": 1,
}


class RawLine(NamedTuple):
    """One physical line as read: 1-based number, text with its newline, and whether it was cut."""

    line_no: int
    text: str
    truncated: bool


def clean_line(text: str) -> str:
    """Make one log line printable and single-line, capped at MAX_LINE_CHARS characters."""
    return text.translate(_CLEAN_TABLE)[:MAX_LINE_CHARS].rstrip()


def iter_raw_lines(text: TextIO, limit: int) -> Iterator[RawLine]:
    """Yield physical lines lazily; a line longer than `limit` is cut and the rest skipped.

    readline(limit) never holds more than `limit` characters, so a file with no newline
    at all costs `limit` characters of memory, not its size.
    """
    line_no = 0
    while True:
        line = text.readline(limit)
        if not line:
            return
        line_no += 1
        truncated = len(line) >= limit and not line.endswith("\n")
        if truncated:
            _skip_rest_of_line(text, limit)
        yield RawLine(line_no, line, truncated)


def _skip_rest_of_line(text: TextIO, limit: int) -> None:
    while True:
        rest = text.readline(limit)
        if not rest or rest.endswith("\n"):
            return


def iter_record_lines(text: TextIO, source: str) -> Iterator[RawLine]:
    """Physical lines of a JSONL or CSV file, where a cut line would be corrupt JSON/CSV."""
    for raw in iter_raw_lines(text, MAX_RECORD_CHARS):
        if raw.truncated:
            raise InputFormatError(
                source,
                raw.line_no,
                f"line is longer than {MAX_RECORD_CHARS:,} characters; split the sequence "
                "into shorter ones or check that the file has newlines",
            )
        yield raw


def parse_label(value: object, *, allow_words: bool) -> int | None:
    """Turn a label field into 0/1/None; raise ValueError saying what is accepted.

    Booleans are refused on purpose: `true` in a label field is more often a bug in the
    exporter than a deliberate 1, and JSON true would otherwise pass as int 1.
    """
    if value is None:
        return None
    if isinstance(value, int) and not isinstance(value, bool) and value in (0, 1):
        return value
    if isinstance(value, str):
        key = value.strip().lower()
        if key in ("0", "1") or (allow_words and key in LABEL_WORDS):
            return LABEL_WORDS[key]
    accepted = '0, 1, "0", "1"'
    if allow_words:
        accepted += ', "正常"/"normal" or "异常"/"anomalous"/"abnormal"'
    raise ValueError(f"invalid label {value!r}; use {accepted}")


def parse_category(value: object) -> str | None:
    """A category field: a non-empty string, or absent."""
    if value is None:
        return None
    if not isinstance(value, str):
        raise ValueError(f"category must be a string, got {type(value).__name__} {value!r}")
    return clean_line(value).strip() or None


def split_joined_lines(text: str) -> list[str]:
    """Split a newline-joined block of log lines, dropping blank ones (e.g. a trailing newline)."""
    lines = (clean_line(part) for part in text.replace("\r\n", "\n").replace("\r", "\n").split("\n"))
    return [line for line in lines if line.strip()]


class PrefixedReader(io.RawIOBase):
    """A binary stream that replays bytes already read (for sniffing) before the rest.

    This lets auto-detection peek at stdin or a pipe, which cannot seek back. Closing it
    does not close the wrapped stream: that belongs to the caller.
    """

    def __init__(self, prefix: bytes, inner: BinaryIO) -> None:
        super().__init__()
        self._prefix = memoryview(prefix)
        self._inner = inner

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: WriteableBuffer) -> int:
        out = memoryview(buffer).cast("B")
        if self._prefix:
            n = min(len(out), len(self._prefix))
            out[:n] = self._prefix[:n]
            self._prefix = self._prefix[n:]
            return n
        data = read_some(self._inner, len(out))
        out[: len(data)] = data
        return len(data)


def read_some(stream: BinaryIO, size: int) -> bytes:
    """Read up to `size` bytes without waiting for all of them when the stream allows it.

    read1 returns what a pipe has available, so sniffing an interactive stdin does not
    block until `size` bytes arrive.
    """
    read1 = getattr(stream, "read1", None)
    data = read1(size) if read1 is not None else stream.read(size)
    return bytes(data)
