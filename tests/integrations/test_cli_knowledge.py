"""`logtriage index`, `similar`, `feedback` and `score` with memory, on the embedded store."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from detectors.synthetic import generate
from tests.integrations.test_cli import EXAMPLE, run

pytestmark = pytest.mark.slow


def write_jsonl(path: Path, n: int, seed: int) -> list[dict[str, object]]:
    rows = [
        {"lines": list(s.lines), "label": s.label, "category": s.category} for s in generate(n, seed=seed)
    ]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return rows


def test_index_twice_reports_nothing_new_the_second_time(tmp_path: Path) -> None:
    data = tmp_path / "labelled.jsonl"
    write_jsonl(data, 30, seed=1)
    code, out, err = run("index", str(data))
    assert code == 0, err
    assert "indexed 30 sequences (30 new)" in out
    code, out, _ = run("index", str(data))
    assert "(0 new)" in out and "30 incidents in the store" in out


def test_similar_finds_the_indexed_incident_first(tmp_path: Path) -> None:
    data = tmp_path / "labelled.jsonl"
    rows = write_jsonl(data, 20, seed=2)
    run("index", str(data))
    query = tmp_path / "query.log"
    query.write_text("\n".join(rows[0]["lines"]) + "\n")  # type: ignore[arg-type]
    code, out, err = run("similar", str(query), "--window", "100", "--json")
    assert code == 0, err
    (result,) = [json.loads(line) for line in out.splitlines()]
    assert result["similar"][0]["similarity"] == pytest.approx(1.0, abs=1e-4)
    assert result["similar"][0]["label"] == rows[0]["label"]


def test_a_wrong_verdict_recorded_on_the_cli_flips_the_next_score(tmp_path: Path) -> None:
    normal_window = tmp_path / "checkout.log"
    normal_window.write_text("\n".join(EXAMPLE.read_text().splitlines()[:12]) + "\n")
    _, before, _ = run("score", str(normal_window), "--window", "12", "--json")
    assert json.loads(before)["blended"]["verdict"] == "normal"
    code, out, err = run("feedback", "record", "--file", str(normal_window), "--wrong", "--user", "ana")
    assert code == 0, err
    assert "is now anomalous" in out
    _, after, _ = run("score", str(normal_window), "--window", "12", "--json")
    result = json.loads(after)
    assert result["verdict"] == "normal"  # the detector alone is unchanged: no retraining
    assert result["blended"]["verdict"] == "anomalous"
    assert result["blended"]["decided_by"] == "memory"


def test_feedback_export_writes_detector_and_sft_training_data(tmp_path: Path) -> None:
    normal_window = tmp_path / "checkout.log"
    normal_window.write_text("\n".join(EXAMPLE.read_text().splitlines()[:12]) + "\n")
    run(
        "feedback", "record", "--file", str(normal_window), "--wrong", "--user", "ana",
        "--category", "network_timeout", "--note", "db pool exhausted",
    )  # fmt: skip
    detector_out, sft_out = tmp_path / "det.jsonl", tmp_path / "sft.jsonl"
    assert run("feedback", "export", "--format", "detector", "--out", str(detector_out))[0] == 0
    assert run("feedback", "export", "--format", "sft", "--out", str(sft_out))[0] == 0
    (record,) = [json.loads(line) for line in detector_out.read_text().splitlines()]
    assert record["label"] == 1 and record["category"] == "network_timeout" and len(record["lines"]) == 12
    (chat,) = [json.loads(line) for line in sft_out.read_text().splitlines()]
    roles = [m["role"] for m in chat["messages"]]
    assert roles == ["system", "user", "assistant"]
    assert "<logs>" in chat["messages"][1]["content"]
    assert "network_timeout" in chat["messages"][2]["content"]
    assert "db pool exhausted" in chat["messages"][2]["content"]


def test_feedback_on_an_unknown_incident_exits_2_naming_it() -> None:
    code, _, err = run("feedback", "record", "--incident", "nope", "--correct", "--user", "ana")
    assert code == 2
    assert "no incident with id nope" in err


def test_export_with_an_unknown_format_exits_2() -> None:
    code, _, err = run("feedback", "export", "--format", "parquet")
    assert code == 2 and "choose detector or sft" in err
