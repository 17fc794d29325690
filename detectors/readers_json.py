"""Readers for the JSON formats: our JSONL, the seed project's JSON list and its JSONL."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any, TextIO

from detectors.readers_common import (
    clean_line,
    iter_record_lines,
    parse_category,
    parse_label,
    split_joined_lines,
)
from detectors.sequences import InputFormatError, LabelledSequence

JSONL_KEYS = ("lines", "label", "category", "source_id", "extra")
_JSONL_EXAMPLE = '{"lines": ["log line", ...], "label": 0, "category": "..."}'
_SEED_JSON_EXAMPLE = '[{"sequence_id": ..., "label": "正常", "log_entries": ["log line", ...]}, ...]'


def _json_type(value: object) -> str:
    """Name a parsed JSON value the way the user wrote it, for error messages."""
    if isinstance(value, list):
        return "a JSON array"
    if isinstance(value, str):
        return "a JSON string"
    if isinstance(value, bool):
        return "a JSON boolean"
    if isinstance(value, int | float):
        return "a JSON number"
    if value is None:
        return "JSON null"
    return "a JSON object"


def _iter_json_objects(text: TextIO, source: str, example: str) -> Iterator[tuple[int, dict[str, Any]]]:
    """Parse a JSONL stream one line at a time, yielding (line number, object)."""
    for raw in iter_record_lines(text, source):
        if not raw.text.strip():
            continue  # blank lines separate nothing in JSONL; tolerate them
        try:
            value = json.loads(raw.text)
        except json.JSONDecodeError as e:
            raise InputFormatError(
                source,
                raw.line_no,
                f"invalid JSON ({e.msg} at column {e.colno}); each line must be one JSON object like {example}",
            ) from e
        if not isinstance(value, dict):
            raise InputFormatError(
                source, raw.line_no, f"expected a JSON object like {example}; got {_json_type(value)}"
            )
        yield raw.line_no, value


def _lines_field(value: object, key: str) -> tuple[str, ...]:
    """A list of log lines (or one newline-joined string); raise ValueError if unusable."""
    if isinstance(value, str):
        lines: list[str] = split_joined_lines(value)
    elif isinstance(value, list):
        lines = []
        for i, item in enumerate(value):
            if not isinstance(item, str):
                raise ValueError(f'"{key}"[{i}] is {_json_type(item)}; every log line must be a string')
            lines.append(clean_line(item))
    else:
        raise ValueError(f'"{key}" must be a list of strings; got {_json_type(value)}')
    if not lines:
        raise ValueError(f'"{key}" is empty; a sequence needs at least one log line')
    return tuple(lines)


def _extra_field(value: object) -> dict[str, str]:
    if value is None:
        return {}
    if not isinstance(value, dict) or not all(isinstance(v, str) for v in value.values()):
        raise ValueError('"extra" must be a JSON object whose values are strings')
    return {str(k): clean_line(v) for k, v in value.items()}


def _jsonl_sequence(obj: dict[str, Any], default_id: str) -> LabelledSequence:
    unknown = [key for key in obj if key not in JSONL_KEYS]
    if unknown:
        raise ValueError(
            f"unknown key {unknown[0]!r}; allowed keys are {', '.join(JSONL_KEYS)} "
            '(put other metadata under "extra")'
        )
    if "lines" not in obj:
        raise ValueError(f'missing "lines"; expected a JSON object like {_JSONL_EXAMPLE}')
    source_id = obj.get("source_id")
    if source_id is not None and not isinstance(source_id, str):
        raise ValueError(f'"source_id" must be a string; got {_json_type(source_id)}')
    return LabelledSequence(
        lines=_lines_field(obj["lines"], "lines"),
        label=parse_label(obj.get("label"), allow_words=False),
        category=parse_category(obj.get("category")),
        source_id=clean_line(source_id) if source_id else default_id,
        extra=_extra_field(obj.get("extra")),
    )


def read_jsonl(text: TextIO, source: str) -> Iterator[LabelledSequence]:
    """Our format: one `{"lines": [...], "label": 0|1, "category": "..."}` per line."""
    for line_no, obj in _iter_json_objects(text, source, _JSONL_EXAMPLE):
        try:
            yield _jsonl_sequence(obj, f"{source}:{line_no}")
        except ValueError as e:
            raise InputFormatError(source, line_no, str(e)) from e


def _seed_category(obj: dict[str, Any]) -> str | None:
    return parse_category(obj.get("category", obj.get("anomaly_type")))


def _seed_jsonl_sequence(obj: dict[str, Any], default_id: str) -> LabelledSequence:
    # Some seed exports use the seed-json item shape one per line; accept both key names.
    key = "log_sequence" if "log_sequence" in obj else "log_entries"
    if key not in obj:
        raise ValueError(
            'missing "log_sequence"; expected {"log_sequence": "line1\\nline2", "label": "正常"}'
        )
    return LabelledSequence(
        lines=_lines_field(obj[key], key),
        label=parse_label(obj.get("label"), allow_words=True),
        category=_seed_category(obj),
        source_id=default_id,
    )


def read_seed_jsonl(text: TextIO, source: str) -> Iterator[LabelledSequence]:
    """The seed project's JSONL: `{"log_sequence": "l1\\nl2", "label": "正常"|"异常"}` per line."""
    example = '{"log_sequence": "line1\\nline2", "label": "正常"}'
    for line_no, obj in _iter_json_objects(text, source, example):
        try:
            yield _seed_jsonl_sequence(obj, f"{source}:{line_no}")
        except ValueError as e:
            raise InputFormatError(source, line_no, str(e)) from e


def _seed_json_sequence(item: object, source: str, index: int) -> LabelledSequence:
    if not isinstance(item, dict):
        raise ValueError(f"expected a JSON object; got {_json_type(item)}")
    if "log_entries" not in item:
        raise ValueError(f'missing "log_entries"; expected {_SEED_JSON_EXAMPLE}')
    seq_id = item.get("sequence_id")
    extra = {} if seq_id is None else {"sequence_id": clean_line(str(seq_id))}
    lines = _lines_field(item["log_entries"], "log_entries")
    length = item.get("length")
    if isinstance(length, int) and not isinstance(length, bool) and length != len(lines):
        # "length" is informational in the seed data; keep the mismatch visible, not fatal.
        extra["declared_length"] = str(length)
    return LabelledSequence(
        lines=lines,
        label=parse_label(item.get("label"), allow_words=True),
        category=_seed_category(item),
        source_id=f"{source}#{extra['sequence_id']}" if "sequence_id" in extra else f"{source}[{index}]",
        extra=extra,
    )


def read_seed_json(text: TextIO, source: str) -> Iterator[LabelledSequence]:
    """The seed project's single JSON document: a list of sequence objects.

    This one is read whole (it is one document); the seed files are small.
    """
    try:
        document = json.loads(text.read())
    except json.JSONDecodeError as e:
        raise InputFormatError(
            source, e.lineno, f"invalid JSON ({e.msg} at column {e.colno}); expected {_SEED_JSON_EXAMPLE}"
        ) from e
    if not isinstance(document, list):
        raise InputFormatError(
            source,
            None,
            f"expected a JSON array of sequences like {_SEED_JSON_EXAMPLE}; got {_json_type(document)}",
        )
    for index, item in enumerate(document):
        try:
            sequence = _seed_json_sequence(item, source, index)
        except ValueError as e:
            # json.loads keeps no positions, so point at the item by index (and id if any).
            raise InputFormatError(source, None, f"item {index} of the array: {e}") from e
        yield sequence
