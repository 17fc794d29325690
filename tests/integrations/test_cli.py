"""The `logtriage` command line, driven in-process through Typer's runner with the real shipped model."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from integrations.cli import register_commands

REPO = Path(__file__).resolve().parents[2]
EXAMPLE = REPO / "examples" / "payment-incident.log"
app = register_commands()
runner = CliRunner()

pytestmark = pytest.mark.slow  # each command loads the real MiniLM encoder


def run(*args: str, input: str | bytes | None = None) -> tuple[int, str, str]:
    result = runner.invoke(app, list(args), input=input)
    return result.exit_code, result.stdout, result.stderr


def test_score_example_flags_the_retry_burst_window_and_passes_the_normal_checkout() -> None:
    code, out, _ = run("score", str(EXAMPLE), "--window", "12")
    assert code == 0
    lines = [line for line in out.splitlines() if line.startswith(("NORMAL", "ANOMALOUS"))]
    assert [line.split()[0] for line in lines] == ["NORMAL", "ANOMALOUS"]
    assert "category=network_timeout" in lines[1]
    assert "2 sequences scored, 1 anomalous" in out


def test_score_json_gives_one_complete_result_per_sequence() -> None:
    code, out, _ = run("score", str(EXAMPLE), "--window", "12", "--json")
    assert code == 0
    results = [json.loads(line) for line in out.splitlines()]
    assert len(results) == 2
    incident = results[1]
    assert incident["verdict"] == "anomalous"
    assert incident["source_id"].endswith(":13-24")
    assert incident["probability"] >= incident["threshold"]
    assert incident["threshold_source"].startswith("max F1 on")
    assert incident["model_version"].startswith("lt-det-")
    assert [e["expert"] for e in incident["experts"]] == [0, 1, 2, 3]
    assert sum(e["mean_gate"] for e in incident["experts"]) == pytest.approx(1.0, abs=1e-4)
    # The incident is a database connection that never succeeds: the evidence is that episode.
    assert all("onnect" in e["line"] and "to db at" in e["line"] for e in incident["evidence"][:3])
    assert incident["evidence"][0]["template"].startswith("<TS> INFO [order-service] ")
    contributions = [e["contribution"] for e in incident["evidence"]]
    assert contributions == sorted(contributions, reverse=True)


def test_score_reads_stdin() -> None:
    code, out, _ = run("score", "-", "--window", "12", "--json", input=EXAMPLE.read_bytes())
    assert code == 0
    assert [json.loads(line)["verdict"] for line in out.splitlines()] == ["normal", "anomalous"]


def test_score_survives_binary_and_non_utf8_input(tmp_path: Path) -> None:
    garbage = tmp_path / "garbage.log"
    binary_line = bytes(b for b in range(256) if b not in b"\r\n")
    garbage.write_bytes(b"\x81\x00 INFO [db] ok\n" + binary_line + b"\nlatin1 caf\xe9 started\n")
    code, out, _ = run("score", str(garbage), "--json", "--top-k", "3")
    assert code == 0
    result = json.loads(out.splitlines()[0])
    assert result["n_lines"] == 3
    assert all("\ufffd" in e["line"] for e in result["evidence"])  # undecodable bytes replaced, never a crash


def test_score_of_an_empty_file_exits_2_saying_no_log_lines(tmp_path: Path) -> None:
    empty = tmp_path / "empty.log"
    empty.write_text("")
    code, _, err = run("score", str(empty))
    assert code == 2
    assert "no log lines" in err


def test_malformed_jsonl_exits_2_naming_the_line(tmp_path: Path) -> None:
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"lines": ["a"], "label": 0}\n{"lines": ["b"], "label": 1\n')
    code, _, err = run("score", str(bad), "--format", "jsonl")
    assert code == 2
    assert f"{bad}:2" in err


def test_missing_model_dir_exits_2_and_says_how_to_train_one(tmp_path: Path) -> None:
    code, _, err = run("score", str(EXAMPLE), "--model", str(tmp_path))
    assert code == 2
    assert "logtriage train" in err


def test_missing_file_exits_2() -> None:
    code, _, err = run("score", "/nonexistent/file.log")
    assert code == 2
    assert "no such file" in err


def test_generate_is_deterministic_per_seed(tmp_path: Path) -> None:
    first, second, other = (tmp_path / n for n in ("a.jsonl", "b.jsonl", "c.jsonl"))
    for path, seed in ((first, "3"), (second, "3"), (other, "4")):
        assert run("generate", "--n", "50", "--seed", seed, "--out", str(path))[0] == 0
    assert first.read_text() == second.read_text()
    assert first.read_text() != other.read_text()
    records = [json.loads(line) for line in first.read_text().splitlines()]
    assert sum(r["label"] for r in records) == 15


def test_eval_json_prints_the_documented_keys_last(tmp_path: Path) -> None:
    data = tmp_path / "test.jsonl"
    run("generate", "--n", "200", "--seed", "4242", "--out", str(data))
    code, out, _ = run("eval", "--data", str(data), "--json")
    assert code == 0
    report = json.loads(out.strip().splitlines()[-1])
    assert set(report) == {"precision", "recall", "f1", "auprc", "accuracy", "n", "anomalies", "per_category"}
    assert report["n"] == 200 and report["anomalies"] == 60
    assert set(report["per_category"]) == {
        "normal",
        "service_cascade_failure",
        "authentication_failure",
        "resource_exhaustion",
        "network_timeout",
        "data_corruption",
    }
    assert report["f1"] > 0.85  # the shipped model on unseen synthetic data; the keyword baseline gets ~0.45


def test_eval_of_unlabelled_data_exits_2() -> None:
    code, _, err = run("eval", "--data", str(EXAMPLE))
    assert code == 2
    assert "no label" in err


def test_train_writes_a_model_that_score_can_use(tmp_path: Path) -> None:
    data, model = tmp_path / "train.jsonl", tmp_path / "model"
    run("generate", "--n", "300", "--seed", "5", "--out", str(data))
    code, out, _ = run(
        "train",
        "--train",
        str(data),
        "--out",
        str(model),
        "--dense-epochs",
        "1",
        "--gated-epochs",
        "1",
    )
    assert code == 0, out
    assert sorted(p.name for p in model.iterdir()) == [
        "calibration.json",
        "config.json",
        "model.safetensors",
        "model_card.json",
    ]
    code, out, _ = run("score", str(EXAMPLE), "--model", str(model), "--json")
    assert code == 0
    assert (
        json.loads(out.splitlines()[0])["model_version"]
        == json.loads((model / "config.json").read_text())["version"]
    )


def test_console_script_exits_2_on_bad_input_outside_the_test_runner(tmp_path: Path) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text("[{]")
    script = Path(sys.executable).parent / "logtriage"
    done = subprocess.run(
        [str(script), "score", str(bad), "--format", "seed-json"], capture_output=True, text=True
    )
    assert done.returncode == 2
    assert "bad.json:1" in done.stderr
