"""Input readers for the log-sequence anomaly detector.

`read_sequences` turns a file, stdin ("-") or a binary stream into LabelledSequence
objects, in one of several formats (see InputFormat), detecting the format when asked.
Every format but the single-document seed JSON streams: memory stays bounded by one
sequence, whatever the file size. Malformed input raises InputFormatError naming the
line; undecodable bytes and control characters are replaced, never fatal.

The format readers live in readers_json, readers_raw and readers_hdfs.
"""

from __future__ import annotations

import csv
import io
import json
import re
import sys
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Literal, TextIO, get_args

from detectors.readers_common import MAX_LINE_CHARS, PrefixedReader, read_some
from detectors.readers_hdfs import DEFAULT_TEMPLATES_NAME, SEQUENCE_COLUMN, load_templates, read_hdfs
from detectors.readers_json import read_jsonl, read_seed_json, read_seed_jsonl
from detectors.readers_raw import read_raw
from detectors.sequences import InputFormatError, LabelledSequence

__all__ = [
    "MAX_LINE_CHARS",
    "InputFormat",
    "InputFormatError",
    "LabelledSequence",
    "detect_format",
    "read_sequences",
]

InputFormat = Literal["auto", "jsonl", "seed-json", "seed-jsonl", "raw", "hdfs"]
FORMATS: tuple[InputFormat, ...] = get_args(InputFormat)
STDIN = "-"
# Enough to see the first record of any of our formats without reading a huge file whole.
SNIFF_LIMIT = 64 * 1024
_UTF16_BOMS = (b"\xff\xfe", b"\xfe\xff")
# Fallback when the first JSON line is cut or pretty-printed: look for a telltale key.
_KEY_HINT = re.compile(r'"(lines|log_sequence|log_entries)"\s*:')
_LEADING_SPACE = "\ufeff \t\r\n"


@dataclass(frozen=True, slots=True)
class _Options:
    window: int
    step: int
    label_first_token: bool
    hdfs_templates: Path | None


def read_sequences(
    source: str | Path | BinaryIO,
    *,
    fmt: InputFormat = "auto",
    window: int = 20,
    step: int | None = None,
    label_first_token: bool = False,
    hdfs_templates: str | Path | None = None,
    source_name: str | None = None,
) -> Iterator[LabelledSequence]:
    """Yield the sequences in `source` (a path, "-" for stdin, or a binary stream).

    `window`/`step`/`label_first_token` apply to the raw format; `hdfs_templates` to hdfs
    (default: HDFS_templates.csv beside the sequence file). `source_name` names the input
    in source ids and error messages. Bad arguments raise ValueError at once; problems in
    the input raise InputFormatError while iterating.
    """
    if fmt not in FORMATS:
        raise ValueError(f"unknown format {fmt!r}; choose one of {', '.join(FORMATS)}")
    if window < 1:
        raise ValueError(f"window must be at least 1, got {window}")
    if step is not None and step < 1:
        raise ValueError(f"step must be at least 1, got {step}")
    options = _Options(
        window=window,
        step=window if step is None else step,
        label_first_token=label_first_token,
        hdfs_templates=Path(hdfs_templates) if hdfs_templates is not None else None,
    )
    # A separate generator so the argument checks above run at call time, not first next().
    return _generate(source, fmt, options, _source_name(source, source_name))


def detect_format(source: str | Path | bytes) -> InputFormat:
    """Guess the format of a file (path) or of its first bytes; never returns "auto".

    `[` then `{` → seed-json; `{` → by the first object's keys ("lines" → jsonl,
    "log_sequence"/"log_entries" → seed-jsonl, anything else is a JSON-structured log → raw);
    a CSV header with a "Sequence" column → hdfs; everything else → raw.
    """
    if isinstance(source, bytes):
        return _detect_from_text(_decode_head(source))
    with open(source, "rb") as f:
        return _detect_from_text(_decode_head(_read_head(f)))


def _source_name(source: str | Path | BinaryIO, given: str | None) -> str:
    if given is not None:
        return given
    if isinstance(source, Path):
        return str(source)
    if isinstance(source, str):
        return "<stdin>" if source == STDIN else source
    name = getattr(source, "name", None)
    return name if isinstance(name, str) else "<stream>"


def _generate(
    source: str | Path | BinaryIO, fmt: InputFormat, options: _Options, name: str
) -> Iterator[LabelledSequence]:
    with ExitStack() as stack:
        try:
            stream = _open_binary(source, stack)
            head = _read_head(stream)
        except OSError as e:
            raise InputFormatError(
                name, None, f"cannot read the input ({e.strerror or e}); check the path"
            ) from e
        encoding = _encoding(head)
        chosen = _detect_from_text(head.decode(encoding, errors="replace")) if fmt == "auto" else fmt
        # Replay the sniffed head, then the rest: stdin and pipes cannot seek back.
        # errors="replace" makes undecodable bytes U+FFFD instead of an exception.
        text = io.TextIOWrapper(
            io.BufferedReader(PrefixedReader(head, stream)), encoding=encoding, errors="replace", newline=None
        )
        stack.callback(text.close)  # closes only our wrappers; PrefixedReader spares `stream`
        yield from _dispatch(chosen, text, name, options, source)


def _open_binary(source: str | Path | BinaryIO, stack: ExitStack) -> BinaryIO:
    if isinstance(source, str) and source == STDIN:
        return sys.stdin.buffer
    if isinstance(source, str | Path):
        return stack.enter_context(open(source, "rb"))
    return source


def _dispatch(
    fmt: InputFormat, text: TextIO, name: str, options: _Options, source: str | Path | BinaryIO
) -> Iterator[LabelledSequence]:
    if fmt == "jsonl":
        return read_jsonl(text, name)
    if fmt == "seed-jsonl":
        return read_seed_jsonl(text, name)
    if fmt == "seed-json":
        return read_seed_json(text, name)
    if fmt == "hdfs":
        return read_hdfs(text, name, load_templates(_templates_path(source, options, name)))
    return read_raw(
        text, name, window=options.window, step=options.step, label_first_token=options.label_first_token
    )


def _templates_path(source: str | Path | BinaryIO, options: _Options, name: str) -> Path:
    if options.hdfs_templates is not None:
        return options.hdfs_templates
    if isinstance(source, str | Path) and source != STDIN:
        return Path(source).parent / DEFAULT_TEMPLATES_NAME
    raise InputFormatError(
        name,
        None,
        "HDFS sequences from a stream need a template table; pass hdfs_templates= (CLI: --hdfs-templates)",
    )


def _read_head(stream: BinaryIO) -> bytes:
    """Read just enough of the start to recognise the format (at most SNIFF_LIMIT bytes)."""
    head = b""
    while len(head) < SNIFF_LIMIT:
        chunk = read_some(stream, SNIFF_LIMIT - len(head))
        if not chunk:
            break
        head += chunk
        if _head_is_enough(_decode_head(head)):
            break
    return head


def _head_is_enough(text: str) -> bool:
    start = text.lstrip(_LEADING_SPACE)
    if start.startswith("["):
        return bool(start[1:].lstrip(_LEADING_SPACE))  # need the character after "["
    return "\n" in start  # need the whole first line (JSON keys, CSV header)


def _encoding(head: bytes) -> str:
    # utf-8-sig also reads plain UTF-8 and drops a UTF-8 BOM; "utf-16" reads either BOM,
    # which Windows tools (PowerShell's Out-File) like to write.
    return "utf-16" if head.startswith(_UTF16_BOMS) else "utf-8-sig"


def _decode_head(head: bytes) -> str:
    return head.decode(_encoding(head), errors="replace")


def _detect_from_text(text: str) -> InputFormat:
    start = text.lstrip(_LEADING_SPACE)
    first_line = start.split("\n", 1)[0]
    if start.startswith("["):
        # Only a JSON array of objects: "[2024-01-01 12:00] INFO" starts many plain logs.
        return "seed-json" if start[1:].lstrip(_LEADING_SPACE)[:1] in ("{", "]") else "raw"
    if start.startswith("{"):
        return _detect_json_object(first_line, start)
    if first_line and SEQUENCE_COLUMN in [c.strip() for c in next(csv.reader([first_line]), [])]:
        return "hdfs"
    return "raw"


def _detect_json_object(first_line: str, head: str) -> InputFormat:
    try:
        first = json.loads(first_line)
        keys = set(first) if isinstance(first, dict) else set()
    except json.JSONDecodeError:
        # Cut off by SNIFF_LIMIT, pretty-printed or malformed: fall back to key names so
        # the chosen reader can report the real error with its line number.
        keys = set(_KEY_HINT.findall(head))
    if "lines" in keys:
        return "jsonl"
    if keys & {"log_sequence", "log_entries"}:
        return "seed-jsonl"
    return "raw"  # a JSON-structured application log, one event per line
