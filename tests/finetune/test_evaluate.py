"""Evaluation checks: each metric can pass and fail on hand-written answers."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from rich.progress import Progress

from assistant import quantize
from assistant.local_model import LoadedModel
from finetune.evaluate import evaluate, evaluate_models, format_table, metrics, rows_file, score_answer
from finetune.examples import Expected, SFTExample, Turn, split_of, write_examples
from tests.finetune.tiny import save_model_dir, tiny_llama, tiny_tokenizer

TURNS = [Turn(role="user", content="q"), Turn(role="assistant", content="a")]
CALL = {"name": "record_feedback", "arguments": {"incident_id": "abc", "correct": False}}


def example(kind: str, **expected: object) -> SFTExample:
    return SFTExample(id=kind, kind=kind, turns=TURNS, expected=Expected(**expected))  # type: ignore[arg-type]


def test_a_triage_answer_needs_a_valid_report_with_the_right_category_citing_a_shown_line() -> None:
    triage = example("triage", status="anomalous", category="network_timeout", evidence=[4, 7])
    good = '{"status": "anomalous", "category": "network_timeout", "key_indicators": ["L4"], "next_steps": ["x"]}\n[L4] times out.'
    assert score_answer(triage, good) == {
        "valid_json": True,
        "category": True,
        "status": True,
        "cites_evidence": True,
    }
    wrong_line = good.replace("L4", "L2")
    assert score_answer(triage, wrong_line)["cites_evidence"] is False
    wrong_category = good.replace("network_timeout", "data_corruption")
    assert score_answer(triage, wrong_category)["category"] is False
    broken = '{"status": "anomalous", "category": "network_timeout"\n[L4] times out.'
    assert score_answer(triage, broken)["valid_json"] is False


def test_a_tool_call_must_match_name_and_arguments_exactly_and_no_call_is_right_when_none_is_due() -> None:
    wanted = example("tool_call", tool_call=CALL, expects_tool_decision=True)
    exact = '<tool_call>\n{"name": "record_feedback", "arguments": {"incident_id": "abc", "correct": false}}\n</tool_call>'
    assert score_answer(wanted, exact) == {"tool_call_exact": True}
    assert score_answer(wanted, exact.replace("false", "true")) == {"tool_call_exact": False}
    assert score_answer(wanted, "I would record feedback.") == {"tool_call_exact": False}
    none_due = example("chat", tool_call=None, expects_tool_decision=True)
    assert score_answer(none_due, "Because [L4] times out.") == {"tool_call_exact": True}
    assert score_answer(none_due, exact) == {"tool_call_exact": False}


def test_seed_format_answers_are_json_with_status_and_category_compared_case_blind() -> None:
    seed = example("seed", status="Abnormal", category="network_timeout")
    assert score_answer(seed, '{"status": "Abnormal", "category": "Network_Timeout"}') == {
        "valid_json": True,
        "category": True,
    }
    assert score_answer(seed, "Abnormal: network timeout") == {"valid_json": False, "category": False}


def test_metrics_are_rates_over_the_kinds_they_apply_to() -> None:
    rows = [
        {"kind": "triage", "valid_json": True, "category": True, "cites_evidence": False, "status": True},
        {"kind": "triage", "valid_json": False, "category": False, "cites_evidence": False, "status": False},
        {"kind": "tool_call", "tool_call_exact": True},
    ]
    result = metrics(rows)
    assert result["valid_json"] == {"rate": 0.5, "n": 2}
    assert result["tool_call_exact"] == {"rate": 1.0, "n": 1}
    assert result["category_accuracy_raw_logs"] == {"rate": None, "n": 0}


def test_an_interrupted_evaluation_resumes_from_the_rows_it_saved(tmp_path: Path) -> None:
    tokenizer = tiny_tokenizer()
    loaded = LoadedModel(
        model=tiny_llama(tokenizer).eval(),
        tokenizer=tokenizer,
        name="tiny",
        precision="fp32",
        stop_token_ids=(tokenizer.eos_token_id,),
        pad_token_id=tokenizer.pad_token_id,
    )
    examples = [
        SFTExample(id=f"t{i}", kind="tool_call", turns=TURNS, expected=Expected(expects_tool_decision=True))
        for i in range(3)
    ]
    # Another file's example under a reused id is another row.
    examples.append(examples[0].model_copy(update={"turns": [TURNS[0], Turn(role="assistant", content="b")]}))
    rows_path = tmp_path / "adapter.rows.jsonl"
    first = evaluate(loaded, examples, rows_path=rows_path, max_new_tokens=8)
    saved = rows_path.read_text().splitlines()
    assert [json.loads(line)["id"] for line in saved] == ["t0", "t1", "t2", "t0"]

    # Killed while writing the third row; the first row's answer is marked to see it reused.
    kept = json.loads(saved[0]) | {"output": "SAVED"}
    rows_path.write_text(
        json.dumps(kept) + "\n" + saved[1] + "\n" + saved[2][:10]
    )  # t0 of the other file lost
    resumed = evaluate(loaded, examples, rows_path=rows_path, max_new_tokens=8)

    assert [r["output"] for r in resumed["rows"]] == ["SAVED"] + [r["output"] for r in first["rows"][1:]]
    assert [json.loads(line)["id"] for line in rows_path.read_text().splitlines()] == ["t0", "t1", "t2", "t0"]
    assert len(rows_path.read_text().splitlines()) == 4  # the cut line dropped, the last two made again


def test_saved_rows_of_a_retrained_adapter_or_another_precision_are_kept_apart(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    adapter = tmp_path / "adapter"
    adapter.mkdir()
    (adapter / "adapter_model.safetensors").write_bytes(b"first run")
    first = rows_file(tmp_path / "rows", "adapter", None, adapter, "int8")
    assert rows_file(tmp_path / "rows", "adapter", None, adapter, "int8") == first
    assert rows_file(tmp_path / "rows", "adapter", None, adapter, "fp32") != first
    with monkeypatch.context() as patched:  # another int8 plan: other layers left in float
        patched.setattr(quantize, "KEEP_FLOAT", ("self_attn",))
        assert rows_file(tmp_path / "rows", "adapter", None, adapter, "int8") != first
    (adapter / "adapter_model.safetensors").write_bytes(b"retrained, other size")
    assert rows_file(tmp_path / "rows", "adapter", None, adapter, "int8") != first


def test_tool_call_examples_are_answered_at_the_tool_precision_and_the_rest_at_the_main_one(
    tmp_path: Path,
) -> None:
    tokenizer = tiny_tokenizer()
    base = save_model_dir(tiny_llama(tokenizer), tokenizer, tmp_path / "base")
    heldout = [i for i in (f"x{n}" for n in range(500)) if split_of(i) == "heldout"]
    triage = example("triage", status="anomalous", category="network_timeout", evidence=[1])
    tool = example("tool_call", tool_call=CALL, expects_tool_decision=True)
    data = tmp_path / "data.jsonl"
    write_examples(
        [
            triage.model_copy(update={"id": heldout[0]}),
            tool.model_copy(update={"id": heldout[1], "tools": True}),
        ],
        data,
    )
    rows_dir = tmp_path / "rows"

    report = evaluate_models(
        [data], tmp_path, base, None, "int8", None, False, lambda: Progress(disable=True), rows_dir, "fp32"
    )

    assert (report["precision"], report["tool_precision"]) == ("int8", "fp32")
    assert "(int8; tool calls fp32)" in format_table(report)
    kinds = {
        precision: [
            json.loads(line)["kind"] for line in rows_file(rows_dir, "base", base, None, precision).open()
        ]
        for precision in ("int8", "fp32")
    }
    assert kinds == {"int8": ["triage"], "fp32": ["tool_call"]}
    assert (
        report["base"]["metrics"]["tool_call_exact"]["n"] == 1
        and report["base"]["metrics"]["valid_json"]["n"] == 1
    )
