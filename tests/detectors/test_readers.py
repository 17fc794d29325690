"""Tests for detectors.readers: every input format, auto-detection and robustness."""

from __future__ import annotations

import io
import json
import sys
import tracemalloc
from collections import Counter
from pathlib import Path

import pytest

from detectors.readers import MAX_LINE_CHARS, InputFormat, detect_format, read_sequences
from detectors.sequences import InputFormatError, LabelledSequence

SHARED_DATA = Path(__file__).resolve().parents[2].parent / "shared" / "data"

TEMPLATES_CSV = (
    "EventId,EventTemplate\r\nE1,Receiving block <*>\r\nE2,Served block <*>\r\nE3,Deleting block <*>\r\n"
)


def _write(tmp_path: Path, name: str, content: str | bytes) -> Path:
    path = tmp_path / name
    if isinstance(content, str):
        path.write_text(content, encoding="utf-8")
    else:
        path.write_bytes(content)
    return path


def _jsonl(*objects: object) -> str:
    return "".join(json.dumps(obj, ensure_ascii=False) + "\n" for obj in objects)


def _read(source: Path | io.BytesIO, **kwargs: object) -> list[LabelledSequence]:
    return list(read_sequences(source, **kwargs))  # type: ignore[arg-type]


def test_jsonl_yields_one_sequence_per_line_with_optional_label_and_category(tmp_path: Path) -> None:
    records = _jsonl(
        {"lines": ["a", "b"], "label": 1, "category": "disk"},
        {"lines": ["c"]},
        {"lines": ["d"], "label": "0"},
    )
    first, second, third = _read(_write(tmp_path, "s.jsonl", records + "\n\n"))
    assert first == LabelledSequence(("a", "b"), 1, "disk", f"{tmp_path / 's.jsonl'}:1")
    assert second.lines == ("c",) and second.label is None and second.category is None
    assert third.label == 0  # the strings "0" and "1" are accepted too


@pytest.mark.parametrize("label", [True, 2, "yes", "异常", 0.5])
def test_jsonl_rejects_labels_other_than_zero_or_one_naming_the_line(tmp_path: Path, label: object) -> None:
    path = _write(tmp_path, "s.jsonl", _jsonl({"lines": ["a"]}, {"lines": ["b"], "label": label}))
    with pytest.raises(InputFormatError, match="invalid label") as info:
        _read(path)
    assert info.value.line_no == 2
    assert str(info.value).startswith(f"{path}:2: ")


def test_jsonl_rejects_an_unknown_key_and_lists_the_allowed_ones(tmp_path: Path) -> None:
    path = _write(tmp_path, "s.jsonl", _jsonl({"lines": ["a"], "lable": 1}))
    with pytest.raises(InputFormatError, match="unknown key 'lable'; allowed keys are lines, label"):
        _read(path)


def test_jsonl_malformed_json_reports_its_line_number(tmp_path: Path) -> None:
    path = _write(tmp_path, "s.jsonl", _jsonl({"lines": ["a"]}) + '\n{"lines": ["b"\n')
    with pytest.raises(InputFormatError, match="invalid JSON") as info:
        _read(path, fmt="jsonl")
    assert info.value.line_no == 3


@pytest.mark.parametrize(
    ("line", "problem"),
    [
        ('["a", "b"]', r'expected a JSON object like \{"lines".*got a JSON array'),
        ('{"lines": ["a", 3]}', r'"lines"\[1\] is a JSON number; every log line must be a string'),
        ('{"label": 1}', r'missing "lines"'),
    ],
)
def test_jsonl_record_of_the_wrong_shape_says_what_was_expected(
    tmp_path: Path, line: str, problem: str
) -> None:
    with pytest.raises(InputFormatError, match=problem):
        _read(_write(tmp_path, "s.jsonl", line + "\n"), fmt="jsonl")


def test_seed_json_reads_the_list_with_chinese_and_english_labels(tmp_path: Path) -> None:
    items = [
        {"sequence_id": 7, "label": "正常", "length": 2, "log_entries": ["ok 1", "ok 2"]},
        {"sequence_id": 8, "label": "异常", "length": 1, "log_entries": ["disk failed"]},
        {"sequence_id": 9, "label": "abnormal", "length": 1, "log_entries": ["x"]},
        {"sequence_id": 10, "label": 0, "length": 1, "log_entries": ["y"]},
    ]
    path = _write(tmp_path, "seed.json", json.dumps(items, ensure_ascii=False, indent=2))
    sequences = _read(path)
    assert [s.label for s in sequences] == [0, 1, 1, 0]
    assert sequences[0].lines == ("ok 1", "ok 2")
    assert sequences[1].source_id == f"{path}#8"
    assert sequences[1].extra == {"sequence_id": "8"}


def test_seed_json_accepts_log_entries_as_one_newline_joined_string(tmp_path: Path) -> None:
    path = _write(tmp_path, "seed.json", json.dumps([{"label": "normal", "log_entries": "a\nb\r\nc\n"}]))
    (sequence,) = _read(path)
    assert sequence.lines == ("a", "b", "c")


def test_seed_json_syntax_error_reports_its_line_number(tmp_path: Path) -> None:
    path = _write(tmp_path, "seed.json", '[\n  {"label": 0,\n   "log_entries": ["a"],,\n  }\n]\n')
    with pytest.raises(InputFormatError, match="invalid JSON") as info:
        _read(path)
    assert info.value.line_no == 3


@pytest.mark.parametrize(
    ("document", "problem"),
    [
        (
            [{"label": 0, "log_entries": ["a"]}, {"label": "maybe", "log_entries": ["b"]}],
            "item 1 of the array: invalid label 'maybe'",
        ),
        ({"sequences": []}, "expected a JSON array of sequences.*got a JSON object"),
    ],
)
def test_seed_json_of_the_wrong_shape_names_the_problem(
    tmp_path: Path, document: object, problem: str
) -> None:
    with pytest.raises(InputFormatError, match=problem):
        _read(_write(tmp_path, "seed.json", json.dumps(document)), fmt="seed-json")


def test_seed_jsonl_maps_chinese_labels_and_keeps_anomaly_type_as_category(tmp_path: Path) -> None:
    path = _write(
        tmp_path,
        "seed.jsonl",
        _jsonl(
            {"log_sequence": "start\nstop", "label": "正常"},
            {"log_sequence": "start\noom killed", "label": "异常", "anomaly_type": "memory"},
            {"log_sequence": "x", "label": "anomalous", "category": "other"},
        ),
    )
    sequences = _read(path)
    assert [(s.lines, s.label, s.category) for s in sequences] == [
        (("start", "stop"), 0, None),
        (("start", "oom killed"), 1, "memory"),
        (("x",), 1, "other"),
    ]


def test_seed_jsonl_missing_log_sequence_names_the_line(tmp_path: Path) -> None:
    path = _write(tmp_path, "seed.jsonl", _jsonl({"log_sequence": "a", "label": 0}, {"label": 1}))
    with pytest.raises(InputFormatError, match='missing "log_sequence"') as info:
        _read(path, fmt="seed-jsonl")
    assert info.value.line_no == 2


def _numbered_lines(n: int) -> str:
    return "".join(f"line {i}\n" for i in range(1, n + 1))


def test_raw_cuts_non_overlapping_windows_and_keeps_the_partial_tail(tmp_path: Path) -> None:
    path = _write(tmp_path, "app.log", _numbered_lines(7))
    sequences = _read(path, window=3)
    assert [s.lines for s in sequences][1:] == [("line 4", "line 5", "line 6"), ("line 7",)]
    assert [s.source_id for s in sequences] == [f"{path}:1-3", f"{path}:4-6", f"{path}:7-7"]
    assert all(s.label is None and s.category is None for s in sequences)


def test_raw_windows_overlap_when_step_is_smaller_than_window(tmp_path: Path) -> None:
    path = _write(tmp_path, "app.log", _numbered_lines(7))
    assert [s.source_id.rsplit(":", 1)[1] for s in _read(path, window=4, step=2)] == ["1-4", "3-6", "5-7"]
    # A tail whose lines an earlier window already covered is not repeated.
    path = _write(tmp_path, "app.log", _numbered_lines(6))
    assert [s.source_id.rsplit(":", 1)[1] for s in _read(path, window=4, step=2)] == ["1-4", "3-6"]


def test_raw_step_larger_than_window_skips_the_lines_between_windows(tmp_path: Path) -> None:
    path = _write(tmp_path, "app.log", _numbered_lines(7))
    windows = [" ".join(s.lines) for s in _read(path, window=2, step=3)]
    assert windows == ["line 1 line 2", "line 4 line 5", "line 7"]


def test_raw_blank_lines_do_not_count_but_line_numbers_stay_physical(tmp_path: Path) -> None:
    path = _write(tmp_path, "app.log", "a\n\n   \nb\nc\n")
    (sequence,) = _read(path, window=3)
    assert sequence.lines == ("a", "b", "c")
    assert sequence.source_id == f"{path}:1-5"


def test_raw_first_token_labels_mark_a_window_anomalous_with_its_most_common_alert(tmp_path: Path) -> None:
    text = (
        "- 1 node ok\r\n"
        "KERNDTLB 2 data TLB error\r\n"
        "APPSEV 3 app error\r\n"
        "KERNDTLB 4 data TLB error\r\n"
        "- 5 fine\r\n"
        "- 6 fine\r\n"
    )
    path = _write(tmp_path, "bgl.log", text)
    first, second = _read(path, window=4, label_first_token=True)
    assert first.lines == ("1 node ok", "2 data TLB error", "3 app error", "4 data TLB error")
    assert (first.label, first.category) == (1, "KERNDTLB")
    assert (second.lines, second.label, second.category) == (("5 fine", "6 fine"), 0, "normal")


def test_raw_rejects_window_or_step_below_one_when_called() -> None:
    with pytest.raises(ValueError, match="window"):
        read_sequences(io.BytesIO(b"a\n"), window=0)
    with pytest.raises(ValueError, match="step"):
        read_sequences(io.BytesIO(b"a\n"), step=0)
    with pytest.raises(ValueError, match="unknown format"):
        read_sequences(io.BytesIO(b"a\n"), fmt="csv")  # type: ignore[arg-type]


def _hdfs_files(tmp_path: Path, rows: str) -> Path:
    _write(tmp_path, "HDFS_templates.csv", TEMPLATES_CSV)
    return _write(tmp_path, "sessions.csv", "Sequence,label\n" + rows)


def test_hdfs_renders_event_ids_as_template_texts_from_the_table_beside_the_file(tmp_path: Path) -> None:
    path = _hdfs_files(tmp_path, "1 2 2 3,0\n1 3,1\n")
    first, second = _read(path)
    assert [line.split()[0] for line in first.lines] == ["Receiving", "Served", "Served", "Deleting"]
    assert first.lines[0] == "Receiving block <*>"
    assert (first.label, second.label) == (0, 1)
    assert second.source_id == f"{path}:3"


def test_hdfs_unknown_event_id_reports_its_line_number(tmp_path: Path) -> None:
    path = _hdfs_files(tmp_path, "1 2,0\n1 31 2,1\n")
    with pytest.raises(InputFormatError, match="event id 31 has no template E31") as info:
        _read(path)
    assert info.value.line_no == 3


def test_hdfs_templates_can_be_given_explicitly_for_a_stream(tmp_path: Path) -> None:
    templates = _write(tmp_path, "t.csv", TEMPLATES_CSV)
    stream = io.BytesIO(b"Sequence,label\n3 1,1\n")
    (sequence,) = _read(stream, hdfs_templates=templates)
    assert sequence.lines == ("Deleting block <*>", "Receiving block <*>")
    with pytest.raises(InputFormatError, match="hdfs_templates"):
        _read(io.BytesIO(b"Sequence,label\n3 1,1\n"))


def test_hdfs_missing_template_table_says_how_to_pass_one(tmp_path: Path) -> None:
    path = _write(tmp_path, "sessions.csv", "Sequence,label\n1,0\n")
    with pytest.raises(InputFormatError, match="template table not found"):
        _read(path)


@pytest.mark.parametrize(
    ("name", "content", "expected"),
    [
        ("a.jsonl", _jsonl({"lines": ["x"], "label": 0}), "jsonl"),
        ("a.json", '\n  [\n {"sequence_id": 1, "label": "正常", "log_entries": ["x"]}]', "seed-json"),
        ("a.jsonl", _jsonl({"log_sequence": "x\ny", "label": "异常"}), "seed-jsonl"),
        ("a.csv", "Sequence,label\n1 2,0\n", "hdfs"),
        ("a.log", "2024-01-01 12:00 INFO started\n", "raw"),
        ("a.log", "[Sun Dec 04 04:47:44 2005] [notice] workerEnv.init() ok\n", "raw"),
        ("a.log", '{"ts": 1, "level": "info", "msg": "structured app log"}\n', "raw"),
    ],
)
def test_auto_detection_recognises_each_format(
    tmp_path: Path, name: str, content: str, expected: str
) -> None:
    path = _write(tmp_path, name, content)
    assert detect_format(path) == expected
    assert detect_format(content.encode()) == expected


def test_auto_reads_each_format_without_being_told(tmp_path: Path) -> None:
    seed = _write(
        tmp_path, "seed.json", json.dumps([{"label": "异常", "log_entries": ["boom"]}], ensure_ascii=False)
    )
    hdfs = _hdfs_files(tmp_path, "1 2,1\n")
    assert _read(seed)[0].label == 1
    assert _read(hdfs)[0].lines == ("Receiving block <*>", "Served block <*>")


def test_auto_detects_jsonl_from_a_stream_without_losing_the_sniffed_bytes() -> None:
    records = [{"lines": [f"event {i}"], "label": i % 2} for i in range(500)]
    stream = io.BytesIO(_jsonl(*records).encode())
    sequences = _read(stream)
    assert [s.lines[0] for s in sequences] == [f"event {i}" for i in range(500)]
    assert sequences[0].source_id == "<stream>:1"
    assert not stream.closed  # the caller's stream stays theirs


def test_stdin_is_read_when_the_source_is_a_dash(monkeypatch: pytest.MonkeyPatch) -> None:
    fake_stdin = io.TextIOWrapper(io.BytesIO(b"one\ntwo\nthree\n"), encoding="utf-8")
    monkeypatch.setattr(sys, "stdin", fake_stdin)
    (sequence,) = list(read_sequences("-", window=5))
    assert sequence.lines == ("one", "two", "three")
    assert sequence.source_id == "<stdin>:1-3"


@pytest.mark.parametrize("fmt", ["auto", "jsonl", "seed-jsonl", "raw", "hdfs"])
def test_an_empty_file_yields_nothing(tmp_path: Path, fmt: InputFormat) -> None:
    _write(tmp_path, "HDFS_templates.csv", TEMPLATES_CSV)
    path = _write(tmp_path, "empty", b"")
    assert _read(path, fmt=fmt) == []


def test_non_utf8_bytes_are_replaced_instead_of_failing(tmp_path: Path) -> None:
    path = _write(tmp_path, "latin1.log", "café crème\n".encode("latin-1") + b"ok \xff\xfe line\n")
    (sequence,) = _read(path)
    assert sequence.lines == ("caf\ufffd cr\ufffdme", "ok \ufffd\ufffd line")


def test_binary_garbage_reads_as_printable_lines(tmp_path: Path) -> None:
    garbage = bytes(range(256)) * 64 + b"\x00\x00\n\x1b[31mred\x1b[0m\n"
    sequences = _read(_write(tmp_path, "blob.bin", garbage), window=1000)
    lines = [line for s in sequences for line in s.lines]
    assert lines and all(line.isprintable() for line in lines)
    assert all(len(line) <= MAX_LINE_CHARS for line in lines)


def test_nul_and_control_characters_inside_json_lines_are_replaced(tmp_path: Path) -> None:
    # Written by hand: a lone surrogate escape cannot go through json.dumps + UTF-8.
    path = _write(
        tmp_path, "s.jsonl", '{"lines": ["a\\u0000b\\tc\\nd", "\\ud800x"], "category": "c\\u0007"}\n'
    )
    (sequence,) = _read(path)
    assert sequence.lines == ("a\ufffdb c d", "\ufffdx")
    assert sequence.category == "c\ufffd"


def test_very_long_lines_are_truncated_to_max_line_chars(tmp_path: Path) -> None:
    long_line = "x" * (MAX_LINE_CHARS * 3)
    path = _write(tmp_path, "long.log", f"short\n{long_line}\nafter\n" + "y" * MAX_LINE_CHARS + "\n")
    (sequence,) = _read(path)
    assert [len(line) for line in sequence.lines] == [5, MAX_LINE_CHARS, 5, MAX_LINE_CHARS]
    jsonl = _write(tmp_path, "long.jsonl", _jsonl({"lines": [long_line]}))
    assert _read(jsonl)[0].lines == (long_line[:MAX_LINE_CHARS],)


def test_utf16_file_with_a_byte_order_mark_is_decoded(tmp_path: Path) -> None:
    path = _write(tmp_path, "win.jsonl", _jsonl({"lines": ["hé"], "label": 1}).encode("utf-16"))
    (sequence,) = _read(path)
    assert (sequence.lines, sequence.label) == (("hé",), 1)


def test_a_missing_file_is_an_input_format_error(tmp_path: Path) -> None:
    with pytest.raises(InputFormatError, match="cannot read the input"):
        _read(tmp_path / "nope.log")


def _peak_bytes_while_reading(path: Path) -> tuple[int, int]:
    tracemalloc.start()
    try:
        count = sum(1 for _ in read_sequences(path))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return count, peak


@pytest.mark.parametrize("kind", ["raw", "jsonl"])
def test_a_100k_line_file_streams_in_bounded_memory(tmp_path: Path, kind: str) -> None:
    path = tmp_path / f"big.{kind}"
    filler = "z" * 120
    with path.open("w", encoding="utf-8") as f:
        for i in range(100_000):
            if kind == "raw":
                f.write(f"2024-01-01 00:00:{i % 60:02d} INFO node-{i} {filler}\n")
            else:
                f.write(json.dumps({"lines": [f"node-{i} {filler}"], "label": i % 2}) + "\n")
    size = path.stat().st_size
    assert size > 10_000_000
    count, peak = _peak_bytes_while_reading(path)
    assert count == (5_000 if kind == "raw" else 100_000)
    assert peak < 5_000_000, f"peak {peak:,} bytes while reading a {size:,}-byte file"


@pytest.mark.shared_data
def test_shared_hdfs_training_set_has_12000_sessions_half_anomalous() -> None:
    path = SHARED_DATA / "hdfs" / "robust_log_train.csv"
    if not path.exists():
        pytest.skip(f"shared data not found at {SHARED_DATA}")
    labels = Counter(s.label for s in read_sequences(path))
    assert labels == {0: 6000, 1: 6000}


@pytest.mark.shared_data
def test_shared_bgl_sample_gives_100_windows_of_20_some_anomalous() -> None:
    path = SHARED_DATA / "bgl" / "BGL_2k.log"
    if not path.exists():
        pytest.skip(f"shared data not found at {SHARED_DATA}")
    windows = list(read_sequences(path, window=20, label_first_token=True))
    assert len(windows) == 100
    assert all(len(w.lines) == 20 for w in windows)
    anomalous = [w for w in windows if w.label == 1]
    assert anomalous and all(w.category not in (None, "normal") for w in anomalous)
    assert not any(w.lines[0].startswith("- ") for w in windows)
