"""Reader for HDFS block sessions given as event-id sequences plus a template table.

The shared data (logdeep's robust_log_*.csv) stores each session as space-separated
1-based event ids; id n is template "En" in HDFS_templates.csv (from Loghub).
"""

from __future__ import annotations

import csv
import re
from collections.abc import Iterator
from pathlib import Path
from typing import TextIO

from detectors.readers_common import clean_line, iter_record_lines, parse_label
from detectors.sequences import InputFormatError, LabelledSequence

DEFAULT_TEMPLATES_NAME = "HDFS_templates.csv"
SEQUENCE_COLUMN = "Sequence"
_LABEL_COLUMNS = ("label", "Label")
# Accept "5", "E5", and the bracketed "[E5, E22]" form of Loghub's event traces.
_TOKEN_SPLIT = re.compile(r"[\s,\[\]'\"]+")
_EVENT_ID = re.compile(r"[Ee]?(\d+)")


def _event_number(token: str) -> int | None:
    match = _EVENT_ID.fullmatch(token)
    return int(match.group(1)) if match else None


def load_templates(path: Path) -> dict[int, str]:
    """Read `EventId,EventTemplate` rows into {event number: cleaned template text}."""
    name = str(path)
    try:
        with path.open("r", encoding="utf-8-sig", errors="replace", newline="") as f:
            return _parse_templates(csv.DictReader(f), name)
    except FileNotFoundError as e:
        raise InputFormatError(
            name, None, "HDFS template table not found; pass hdfs_templates= (CLI: --hdfs-templates)"
        ) from e
    except csv.Error as e:
        raise InputFormatError(name, None, f"unreadable CSV ({e})") from e


def _parse_templates(reader: csv.DictReader[str], name: str) -> dict[int, str]:
    if not reader.fieldnames or not {"EventId", "EventTemplate"} <= set(reader.fieldnames):
        raise InputFormatError(name, 1, 'expected a CSV header with "EventId" and "EventTemplate" columns')
    templates: dict[int, str] = {}
    for row in reader:
        number = _event_number((row["EventId"] or "").strip())
        if number is None:
            raise InputFormatError(
                name, reader.line_num, f'EventId {row["EventId"]!r} is not of the form "E<number>"'
            )
        templates[number] = clean_line(row["EventTemplate"] or "")
    return templates


def _render(sequence: str, templates: dict[int, str]) -> tuple[str, ...]:
    lines = []
    for token in _TOKEN_SPLIT.split(sequence.strip()):
        if not token:
            continue
        number = _event_number(token)
        if number is None:
            raise ValueError(f"event id {token!r} is not a number; {SEQUENCE_COLUMN} holds ids like 5 or E5")
        if number not in templates:
            raise ValueError(
                f"event id {token} has no template E{number} in the template table "
                f"(it knows E{min(templates, default=0)}..E{max(templates, default=0)}); "
                "pass the matching HDFS_templates.csv"
            )
        lines.append(templates[number])
    if not lines:
        raise ValueError(f"empty {SEQUENCE_COLUMN}; a session needs at least one event id")
    return tuple(lines)


def read_hdfs(text: TextIO, source: str, templates: dict[int, str]) -> Iterator[LabelledSequence]:
    """One LabelledSequence per CSV row: the session's events rendered as template texts."""
    # csv reads from our lazy line iterator, so the file streams and reader.line_num is
    # the physical line number (each string fed is one line).
    reader = csv.reader(raw.text for raw in iter_record_lines(text, source))
    try:
        header = next(reader, None)
        if header is None:
            return
        columns = _columns(header, source)
        for row in reader:
            if not any(cell.strip() for cell in row):
                continue
            yield _row_sequence(row, columns, source, reader.line_num, templates)
    except csv.Error as e:
        raise InputFormatError(source, reader.line_num, f"unreadable CSV ({e})") from e


def _columns(header: list[str], source: str) -> tuple[int, int | None]:
    names = [cell.strip() for cell in header]
    if SEQUENCE_COLUMN not in names:
        raise InputFormatError(
            source, 1, f'expected a CSV header with a "{SEQUENCE_COLUMN}" column (and optionally "label")'
        )
    label_index = next((names.index(c) for c in _LABEL_COLUMNS if c in names), None)
    return names.index(SEQUENCE_COLUMN), label_index


def _row_sequence(
    row: list[str], columns: tuple[int, int | None], source: str, line_no: int, templates: dict[int, str]
) -> LabelledSequence:
    seq_index, label_index = columns
    try:
        if seq_index >= len(row):
            raise ValueError(f"row has {len(row)} fields but no {SEQUENCE_COLUMN} value")
        label = None
        if label_index is not None and label_index < len(row) and row[label_index].strip():
            label = parse_label(row[label_index], allow_words=True)
        lines = _render(row[seq_index], templates)
    except ValueError as e:
        raise InputFormatError(source, line_no, str(e)) from e
    return LabelledSequence(lines=lines, label=label, source_id=f"{source}:{line_no}")
