"""Tests for assistant.hermes: rendering prompts with tools, and parsing `<tool_call>` output."""

from __future__ import annotations

import re
from typing import Any

import pytest
from langchain_core.messages import AIMessage, HumanMessage, SystemMessage, ToolMessage
from tokenizers import Tokenizer, models
from transformers import PreTrainedTokenizerFast

from assistant.hermes import (
    StreamingSplitter,
    cut_at_stop,
    parse_tool_calls,
    render_prompt,
    template_supports_tools,
    to_template_messages,
)

CHATML = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
# A miniature of Qwen2.5's template: tools are listed by the template, calls and results keep roles.
# transformers renders templates with trim_blocks, so line breaks are written as expressions.
TOOLS_TEMPLATE = (
    "{% if tools %}[tools:{% for t in tools %} {{ t.function.name }}{% endfor %}]\n{% endif %}"
    "{% for m in messages %}{{ m.role }}: {{ m.content }}"
    "{% for c in m.tool_calls or [] %} CALL {{ c.function.name }} {{ c.function.arguments | tojson }}{% endfor %}"
    "{{ '\\n' }}"
    "{% endfor %}{% if add_generation_prompt %}assistant:{% endif %}"
)
SCORE_TOOL = {
    "type": "function",
    "function": {
        "name": "score_logs",
        "description": "Score log lines.",
        "parameters": {"type": "object", "properties": {"path": {"type": "string"}}, "required": ["path"]},
    },
}
CONVERSATION = [
    SystemMessage("Be brief."),
    HumanMessage("Score app.log"),
    AIMessage(
        "",
        tool_calls=[
            {"name": "score_logs", "args": {"path": "app.log"}, "id": "c1"},
            {"name": "similar", "args": {"k": 3}, "id": "c2"},
        ],
    ),
    ToolMessage("p=0.9", tool_call_id="c1"),
    ToolMessage("none", tool_call_id="c2"),
    AIMessage("Anomalous."),
]


def template_tokenizer(template: str) -> PreTrainedTokenizerFast:
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=Tokenizer(models.WordLevel({"<unk>": 0}, unk_token="<unk>"))
    )
    tokenizer.chat_template = template
    return tokenizer


def call(name: str, args: dict[str, Any]) -> dict[str, Any]:
    return {"name": name, "args": args}


def without_ids(calls: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{k: v for k, v in c.items() if k != "id"} for c in calls]


def test_several_tool_calls_are_parsed_in_order_and_removed_from_the_content() -> None:
    text = (
        "Let me look.\n<tool_call>\n"
        '{"name": "score_logs", "arguments": {"path": "app.log"}}\n</tool_call>\n'
        '<tool_call>{"name": "similar", "arguments": {"k": 3}}</tool_call>'
    )

    content, calls = parse_tool_calls(text)

    assert content == "Let me look."
    assert without_ids(calls) == [call("score_logs", {"path": "app.log"}), call("similar", {"k": 3})]
    assert re.fullmatch(r"call_0_[0-9a-f]{8}", calls[0]["id"])
    assert re.fullmatch(r"call_1_[0-9a-f]{8}", calls[1]["id"])


def test_text_without_tool_calls_is_returned_stripped() -> None:
    assert parse_tool_calls("  Paris.\n") == ("Paris.", [])


def test_a_missing_closing_tag_at_the_end_of_output_is_tolerated() -> None:
    content, calls = parse_tool_calls(
        'Checking.\n<tool_call>\n{"name": "get_incident", "arguments": {"id": "i-1"}}\n'
    )

    assert (content, without_ids(calls)) == ("Checking.", [call("get_incident", {"id": "i-1"})])


def test_a_block_left_open_before_the_next_block_still_counts() -> None:
    _, calls = parse_tool_calls(
        '<tool_call>{"name": "a", "arguments": {}}<tool_call>{"name": "b", "arguments": {}}</tool_call>'
    )

    assert without_ids(calls) == [call("a", {}), call("b", {})]


def test_unparsable_blocks_are_dropped_and_kept_out_of_the_content() -> None:
    text = 'Hmm <tool_call>{"name": score_logs, oops}</tool_call> and <tool_call>not json</tool_call> done'

    assert parse_tool_calls(text) == ("Hmm  and  done", [])


@pytest.mark.parametrize(
    "body",
    [
        '{"name": "similar", "arguments": "{\\"k\\": 3}"}',  # arguments as a JSON string (OpenAI style)
        '{"name": "similar", "parameters": {"k": 3}}',  # "parameters" instead of "arguments"
        '{"name": "similar", "arguments": {"k": 3}}}',  # one stray closing brace
        '{"name": "similar", "arguments": {"k": 3}} <|im_end|',  # trailing garbage
        '{"name": "similar", "arguments": {"k": 3}',  # cut off before the last brace
    ],
)
def test_common_argument_shapes_and_small_slips_are_read(body: str) -> None:
    _, calls = parse_tool_calls(f"<tool_call>\n{body}\n</tool_call>")

    assert without_ids(calls) == [call("similar", {"k": 3})]


@pytest.mark.parametrize(
    "body",
    [
        '{"arguments": {"k": 3}}',  # no name
        '{"name": "similar", "arguments": [3]}',  # arguments not an object
        '{"name": "similar", "arguments": "k=3"}',  # string arguments that are not JSON
    ],
)
def test_calls_without_a_name_or_object_arguments_are_dropped(body: str) -> None:
    assert parse_tool_calls(f"<tool_call>{body}</tool_call>") == ("", [])


def test_a_call_without_arguments_gets_empty_args() -> None:
    _, calls = parse_tool_calls('<tool_call>{"name": "list_incidents"}</tool_call>')

    assert without_ids(calls) == [call("list_incidents", {})]


def test_cut_at_stop_cuts_at_the_earliest_stop_string() -> None:
    assert cut_at_stop("a STOP b END c", ["END", "STOP"]) == ("a ", True)
    assert cut_at_stop("no stop here", ["END", ""]) == ("no stop here", False)


STREAMED_TEXTS = [
    "The capital of France is Paris.",
    '  Let me check.\n<tool_call>\n{"name": "score_logs", "arguments": {"path": "a.log"}}\n</tool_call>\n',
    'Before <tool_call>{"name": "a", "arguments": {}}</tool_call> after the call.',
    "A less-than sign < and a partial <tool_c that never completes.",
    '<tool_call>{"name": "a", "arguments": {"x": 1}}',
]


@pytest.mark.parametrize("text", STREAMED_TEXTS)
@pytest.mark.parametrize("piece_len", [1, 3, 50])
def test_streamed_pieces_add_up_to_the_parsed_whole(text: str, piece_len: int) -> None:
    splitter = StreamingSplitter()
    released = [splitter.feed(text[i : i + piece_len]) for i in range(0, len(text), piece_len)]
    rest, calls = splitter.finish()

    expected_content, expected_calls = parse_tool_calls(text)
    assert "".join(released) + rest == expected_content
    assert without_ids(calls) == without_ids(expected_calls)
    assert "<tool_call" not in "".join(released)


def test_streaming_holds_back_a_partial_tag_until_it_is_resolved() -> None:
    splitter = StreamingSplitter()

    assert splitter.feed("Checking <tool_") == "Checking"
    assert splitter.feed("call>{") == ""
    assert splitter.finish() == ("", [])


def test_streaming_stops_at_a_stop_string_split_across_pieces() -> None:
    splitter = StreamingSplitter(stop=["Observation:"])

    assert splitter.feed("Thought: go. Obser") == "Thought: go."
    assert not splitter.stopped
    assert splitter.feed("vation: more text") == ""
    assert splitter.stopped
    assert splitter.finish() == ("", [])


def test_template_tool_support_is_detected_from_the_template_text() -> None:
    assert template_supports_tools(template_tokenizer(TOOLS_TEMPLATE))
    assert not template_supports_tools(template_tokenizer(CHATML))


def test_without_template_tool_support_tools_calls_and_results_are_rendered_as_hermes_text() -> None:
    prompt = render_prompt(template_tokenizer(CHATML), CONVERSATION, [SCORE_TOOL])

    assert prompt == (
        "<|im_start|>system\nBe brief.\n\n# Tools\n\n"
        "You may call one or more functions to assist with the user query.\n\n"
        "You are provided with function signatures within <tools></tools> XML tags:\n<tools>\n"
        "score_logs(path: str): Score log lines.\n"
        "</tools>\n\n"
        "For each function call, return a json object with function name and arguments within "
        "<tool_call></tool_call> XML tags:\n"
        '<tool_call>\n{"name": <function-name>, "arguments": <args-json-object>}\n</tool_call><|im_end|>\n'
        "<|im_start|>user\nScore app.log<|im_end|>\n"
        "<|im_start|>assistant\n"
        '<tool_call>\n{"name": "score_logs", "arguments": {"path": "app.log"}}\n</tool_call>\n'
        '<tool_call>\n{"name": "similar", "arguments": {"k": 3}}\n</tool_call><|im_end|>\n'
        "<|im_start|>user\n<tool_response>\np=0.9\n</tool_response>\n<tool_response>\nnone\n</tool_response><|im_end|>\n"
        "<|im_start|>assistant\nAnomalous.<|im_end|>\n"
        "<|im_start|>assistant\n"
    )


def test_without_a_system_message_the_tools_block_becomes_the_system_message() -> None:
    chat = to_template_messages([HumanMessage("hi")], native_tools=False)
    prompt = render_prompt(template_tokenizer(CHATML), [HumanMessage("hi")], [SCORE_TOOL])

    assert chat == [{"role": "user", "content": "hi"}]
    assert prompt.startswith("<|im_start|>system\n# Tools\n")
    assert prompt.endswith("<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n")


def test_with_template_tool_support_tools_and_calls_go_to_the_template() -> None:
    prompt = render_prompt(template_tokenizer(TOOLS_TEMPLATE), CONVERSATION, [SCORE_TOOL])

    assert prompt == (
        "[tools: score_logs]\n"
        "system: Be brief.\n"
        "user: Score app.log\n"
        'assistant:  CALL score_logs {"path": "app.log"} CALL similar {"k": 3}\n'
        "tool: p=0.9\n"
        "tool: none\n"
        "assistant: Anomalous.\n"
        "assistant:"
    )


def test_without_tools_the_template_renders_the_plain_conversation() -> None:
    prompt = render_prompt(template_tokenizer(TOOLS_TEMPLATE), [SystemMessage("s"), HumanMessage("u")])

    assert prompt == "system: s\nuser: u\nassistant:"
