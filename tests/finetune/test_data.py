"""Fine-tuning data: the held-out split, rendering as inference renders, imports, synthetic traces."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from langchain_core.messages import SystemMessage
from transformers import PreTrainedTokenizerFast

from assistant.answer_format import split_report
from assistant.explainer import LLMExplainer
from assistant.graph import CHAT_TOOLS, pasted_lines
from assistant.hermes import parse_tool_calls, render_prompt
from assistant.lc_tools import chat_tools
from assistant.redaction import RedactionPolicy
from detectors import Detector
from finetune.dataset import assemble
from finetune.examples import (
    SFTExample,
    chat_tool_schemas,
    prompt_and_completion,
    read_examples,
    split_of,
    to_messages,
)
from finetune.importers import UnknownFormatError, from_record, import_file
from finetune.synthetic_data import DataPlan, triage_example
from tests.assistant.scripted import ScriptedChatModel
from tests.finetune.tiny import tiny_tokenizer
from tools.context import Caller, ToolContext
from tools.registry import REGISTRY


@pytest.fixture(scope="module")
def tokenizer() -> PreTrainedTokenizerFast:
    return tiny_tokenizer()


@pytest.fixture(scope="module")
def built(shipped_detector: Detector, tmp_path_factory: pytest.TempPathFactory) -> list[SFTExample]:
    out = tmp_path_factory.mktemp("ft") / "data.jsonl"
    plan = DataPlan(
        history=40, triage=24, chat=36, seed_format=6, inconclusive_share=0.5, tool_answer_share=0.3
    )
    report = assemble(shipped_detector, plan, [], out)
    assert report.total == len(list(read_examples(out)))
    return list(read_examples(out))


def test_the_held_out_split_is_a_stable_tenth_chosen_by_id() -> None:
    ids = [f"example-{i}" for i in range(2000)]
    held = [i for i in ids if split_of(i) == "heldout"]
    assert 0.07 < len(held) / len(ids) < 0.13
    assert held == [i for i in ids if split_of(i) == "heldout"]  # same ids, same split, every time


def test_a_triage_example_is_trained_on_exactly_the_prompt_the_explainer_sends(
    ctx: ToolContext, example_lines: list[str], tokenizer: PreTrainedTokenizerFast
) -> None:
    answer = REGISTRY["score_logs"].call(ctx, {"lines": example_lines}, caller=_caller())
    example = triage_example(answer, key=("t", 0))

    prompt, completion = prompt_and_completion(example, tokenizer, chat_tool_schemas())

    explainer = LLMExplainer(ScriptedChatModel(), RedactionPolicy())  # messages_for never calls the model
    sent = render_prompt(tokenizer, explainer.messages_for(answer))
    assert prompt == sent
    report, prose = split_report(completion.removesuffix("<|im_end|>"))
    assert report is not None and report.category == example.expected.category
    assert completion.endswith("<|im_end|>")
    assert "[L" in prose


def _caller() -> Caller:
    return Caller(user="test", source="cli", authenticated=True)


def test_synthetic_data_has_every_kind_with_grounded_targets(built: list[SFTExample]) -> None:
    chat_schemas = {t.name: t.args_schema for t in chat_tools(None, CHAT_TOOLS)}  # type: ignore[arg-type]
    kinds = {e.kind for e in built}
    assert {"triage", "tool_call", "tool_answer", "seed"} <= kinds
    for example in built:
        answer = example.turns[-1]
        if example.kind == "triage":
            report, prose = split_report(answer.content)
            assert report is not None, answer.content
            assert report.status == example.expected.status and report.category == example.expected.category
            cited = {int(k[1:]) for k in report.key_indicators}
            assert cited and cited <= set(example.expected.evidence), "cites a line the facts did not show"
            if report.status == "inconclusive":
                assert prose.startswith("Inconclusive:")
        if example.kind == "tool_call":
            (call,) = answer.tool_calls
            assert call == example.expected.tool_call
            chat_schemas[call["name"]].model_validate(call["arguments"])  # a valid call of a chat tool
            assert example.tools


def test_inconclusive_triage_examples_are_included(built: list[SFTExample]) -> None:
    assert any(e.expected.status == "inconclusive" for e in built if e.kind == "triage")


def test_tool_answer_examples_carry_the_real_tool_result_before_the_final_answer(
    built: list[SFTExample],
) -> None:
    answered = [e for e in built if e.kind == "tool_answer"]
    assert answered
    for example in answered:
        roles = [t.role for t in example.turns[-3:]]
        assert roles == ["assistant", "tool", "assistant"]
        result = json.loads(example.turns[-2].content)
        assert result["tool"] in REGISTRY


def test_scoring_in_chat_names_the_pasted_lines_instead_of_repeating_them(built: list[SFTExample]) -> None:
    scoring = [e for e in built if e.kind in ("tool_call", "tool_answer") and _called(e) == "score_logs"]
    assert scoring
    for example in scoring:
        question = [t for t in example.turns if t.role == "user"][-1].content
        assert example.turns[-1 if example.kind == "tool_call" else -3].tool_calls == [
            {"name": "score_logs", "arguments": {"pasted": True}}
        ]
        assert len(pasted_lines(question)) >= 3
        if example.kind == "tool_answer":  # the result is the detector's on those very lines
            assert json.loads(example.turns[-2].content)["n_lines"] == len(pasted_lines(question))


def _called(example: SFTExample) -> str | None:
    calls = [c for t in example.turns if t.role == "assistant" for c in t.tool_calls or []]
    return calls[-1]["name"] if calls else None


def test_chat_examples_render_their_tool_call_as_a_hermes_block_the_parser_reads(
    built: list[SFTExample], tokenizer: PreTrainedTokenizerFast
) -> None:
    example = next(e for e in built if e.kind == "tool_call")
    prompt, completion = prompt_and_completion(example, tokenizer, chat_tool_schemas())
    assert "<tools>" in prompt and "record_feedback(" in prompt  # the chat tools are offered
    _, calls = parse_tool_calls(completion.removesuffix("<|im_end|>"))
    assert [(c["name"], c["args"]) for c in calls] == [
        (example.expected.tool_call["name"], example.expected.tool_call["arguments"])  # type: ignore[index]
    ]


def test_building_twice_with_the_same_seed_gives_the_same_examples(
    shipped_detector: Detector, tmp_path: Path, built: list[SFTExample]
) -> None:
    plan = DataPlan(
        history=40, triage=24, chat=36, seed_format=6, inconclusive_share=0.5, tool_answer_share=0.3
    )
    assemble(shipped_detector, plan, [], tmp_path / "again.jsonl")
    assert [e.id for e in read_examples(tmp_path / "again.jsonl")] == [e.id for e in built]


def test_the_seed_unified_format_is_read_with_its_output_as_an_object_or_as_json_text() -> None:
    as_object = {
        "prompt": "Classify.",
        "input": "ERROR disk full",
        "output": {"status": "Abnormal", "category": "disk"},
    }
    as_text = {**as_object, "output": json.dumps(as_object["output"])}
    for record in (as_object, as_text):
        example = from_record(record)
        assert example.kind == "seed"
        assert "<logs>\nERROR disk full\n</logs>" in example.turns[1].content
        assert json.loads(example.turns[-1].content) == {"status": "Abnormal", "category": "disk"}
        assert (example.expected.status, example.expected.category) == ("Abnormal", "disk")


def test_unsloth_instruction_records_and_feedback_exports_are_read(tmp_path: Path) -> None:
    path = tmp_path / "mixed.jsonl"
    rows = [
        {
            "instruction": "Is this anomalous?",
            "input": "WARN retry",
            "output": '{"status": "Normal", "category": "normal"}',
        },
        {
            "messages": [
                {"role": "system", "content": "s"},
                {"role": "user", "content": "u"},
                {
                    "role": "assistant",
                    "content": '{"status": "anomalous", "category": "network_timeout"}\nnote',
                },
            ]
        },
    ]
    path.write_text("\n".join(json.dumps(r) for r in rows))
    unsloth, feedback = list(import_file(path))
    assert unsloth.expected.category == "normal"
    assert feedback.kind == "feedback" and feedback.expected.category == "network_timeout"


def test_an_unknown_record_names_the_line_and_the_formats_we_read(tmp_path: Path) -> None:
    path = tmp_path / "bad.jsonl"
    path.write_text('{"prompt": "p", "input": "i", "output": "o"}\n{"text": "hello"}\n')
    with pytest.raises(UnknownFormatError, match=r"bad.jsonl:2: .*prompt/input/output"):
        list(import_file(path))
    path.write_text("{not json\n")
    with pytest.raises(UnknownFormatError, match=r"bad.jsonl:1: not JSON"):
        list(import_file(path))


def test_to_messages_pairs_each_tool_result_with_its_call(built: list[SFTExample]) -> None:
    example = next(e for e in built if e.kind == "tool_answer")
    messages = to_messages(example.turns)
    assert isinstance(messages[0], SystemMessage)
    call_message, result = messages[-3], messages[-2]
    assert result.tool_call_id == call_message.tool_calls[0]["id"]  # type: ignore[attr-defined]
