"""Hermes-style tool calling for local chat models: prompts in, `<tool_call>` blocks out.

Qwen2.5, Hermes and most small instruct models are trained to answer a tool request with
`<tool_call>{"name": ..., "arguments": {...}}</tool_call>`. When a tokenizer's chat template
renders tools itself (Qwen2.5's does) we hand it OpenAI-format schemas and tool calls; when it does
not (SmolLM2's), we write the same Hermes block into the system message, so both kinds of model
see the convention they were trained on. Nothing here loads a model.
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Sequence
from typing import Any, Protocol

from langchain_core.messages import AIMessage, BaseMessage, HumanMessage, SystemMessage, ToolMessage

TOOL_CALL_OPEN = "<tool_call>"
TOOL_CALL_CLOSE = "</tool_call>"

# A block ends at its closing tag, at the next opening tag, or at the end of the output: small
# models often stop (or hit max_new_tokens) before writing the closing tag.
_TOOL_CALL_BLOCK = re.compile(
    re.escape(TOOL_CALL_OPEN)
    + r"(.*?)(?:"
    + re.escape(TOOL_CALL_CLOSE)
    + r"|(?="
    + re.escape(TOOL_CALL_OPEN)
    + r")|\Z)",
    re.DOTALL,
)

# The wording of Qwen2.5's own template, so models trained on it recognise the block.
_TOOLS_PREAMBLE = (
    "# Tools\n\n"
    "You may call one or more functions to assist with the user query.\n\n"
    "You are provided with function signatures within <tools></tools> XML tags:\n<tools>"
)
_TOOLS_INSTRUCTIONS = (
    "</tools>\n\n"
    "For each function call, return a json object with function name and arguments within "
    "<tool_call></tool_call> XML tags:\n"
    '<tool_call>\n{"name": <function-name>, "arguments": <args-json-object>}\n</tool_call>'
)


class ChatTemplateTokenizer(Protocol):
    """The part of a transformers tokenizer that prompt rendering uses."""

    chat_template: Any

    def apply_chat_template(self, conversation: Any, **kwargs: Any) -> Any: ...


def template_supports_tools(tokenizer: ChatTemplateTokenizer) -> bool:
    """True when the tokenizer's chat template renders a `tools` argument itself."""
    template = tokenizer.chat_template
    if isinstance(template, dict):  # named templates; "tool_use" is the conventional one for tools
        return "tool_use" in template or any("tools" in str(t) for t in template.values())
    return isinstance(template, str) and "tools" in template


def render_prompt(
    tokenizer: ChatTemplateTokenizer,
    messages: Sequence[BaseMessage],
    tools: Sequence[dict[str, Any]] | None = None,
) -> str:
    """The generation prompt for `messages`, with `tools` (OpenAI-format schemas) offered to the model."""
    return render_conversation(tokenizer, messages, tools, add_generation_prompt=True)


def render_conversation(
    tokenizer: ChatTemplateTokenizer,
    messages: Sequence[BaseMessage],
    tools: Sequence[dict[str, Any]] | None = None,
    *,
    add_generation_prompt: bool,
) -> str:
    """`messages` as the model's chat template renders them. Fine-tuning renders a whole example
    with this, and its prompt with `render_prompt`, so training text is what inference sends."""
    tools = list(tools or [])
    native = bool(tools) and template_supports_tools(tokenizer)
    chat = to_template_messages(messages, native_tools=native)
    if tools and not native:
        chat = _with_tools_block(chat, tools)
    kwargs: dict[str, Any] = {"add_generation_prompt": add_generation_prompt, "tokenize": False}
    if native:
        kwargs["tools"] = tools
    prompt = tokenizer.apply_chat_template(chat, **kwargs)
    if not isinstance(prompt, str):
        raise TypeError(f"chat template rendered {type(prompt).__name__}, expected str")
    return prompt


def to_template_messages(messages: Sequence[BaseMessage], *, native_tools: bool) -> list[dict[str, Any]]:
    """LangChain messages as chat-template dicts.

    With `native_tools`, tool calls and results keep their own roles for a template that knows
    them; without, they become Hermes text: `<tool_call>` blocks in the assistant turn and
    `<tool_response>` blocks in a user turn (consecutive results share one turn, as Qwen renders them).
    """
    chat: list[dict[str, Any]] = []
    for message in messages:
        if isinstance(message, SystemMessage):
            chat.append({"role": "system", "content": message.text})
        elif isinstance(message, HumanMessage):
            chat.append({"role": "user", "content": message.text})
        elif isinstance(message, AIMessage):
            chat.append(_assistant_turn(message, native_tools))
        elif isinstance(message, ToolMessage):
            _append_tool_result(chat, message.text, native_tools)
        else:
            raise ValueError(f"cannot render a {type(message).__name__} for a local model")
    return chat


def _assistant_turn(message: AIMessage, native_tools: bool) -> dict[str, Any]:
    if native_tools:
        turn: dict[str, Any] = {"role": "assistant", "content": message.text}
        if message.tool_calls:
            turn["tool_calls"] = [
                {"type": "function", "function": {"name": call["name"], "arguments": call["args"]}}
                for call in message.tool_calls
            ]
        return turn
    parts: list[str] = [message.text] if message.text else []
    parts += [format_tool_call(call["name"], call["args"]) for call in message.tool_calls]
    return {"role": "assistant", "content": "\n".join(parts)}


def _append_tool_result(chat: list[dict[str, Any]], text: str, native_tools: bool) -> None:
    if native_tools:
        chat.append({"role": "tool", "content": text})
        return
    block = f"<tool_response>\n{text}\n</tool_response>"
    last = chat[-1] if chat else None
    if last is not None and last["role"] == "user" and last["content"].endswith("</tool_response>"):
        last["content"] += "\n" + block
    else:
        chat.append({"role": "user", "content": block})


def _with_tools_block(chat: list[dict[str, Any]], tools: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    block = "\n".join([_TOOLS_PREAMBLE, *(compact_signature(tool) for tool in tools), _TOOLS_INSTRUCTIONS])
    if chat and chat[0]["role"] == "system":
        return [{"role": "system", "content": f"{chat[0]['content']}\n\n{block}"}, *chat[1:]]
    return [{"role": "system", "content": block}, *chat]


def compact_signature(tool: dict[str, Any]) -> str:
    """One line per tool, `name(arg: type = default, ...): summary`.

    Models without a tool template get this instead of the full JSON schema: the four chat tools'
    schemas cost ~1,000 prompt tokens, which a CPU pays on every turn (and in every training
    step), while a signature carries what a model needs to write the call. Arguments are still
    validated against the full schema when the call runs.
    """
    function = tool.get("function", tool)
    params = function.get("parameters", {}) or {}
    required = set(params.get("required", []))
    args = []
    for name, schema in (params.get("properties") or {}).items():
        arg = f"{name}: {_type_name(schema)}"
        if name not in required:
            arg += f" = {json.dumps(schema.get('default'))}"
        args.append(arg)
    summary = (function.get("description") or "").strip().split("\n", 1)[0]
    return f"{function['name']}({', '.join(args)}): {summary}"


def _type_name(schema: dict[str, Any]) -> str:
    if "anyOf" in schema:
        return " | ".join(_type_name(option) for option in schema["anyOf"])
    if "enum" in schema:
        return " | ".join(json.dumps(value) for value in schema["enum"])
    kind = schema.get("type", "any")
    if kind == "array":
        return f"list[{_type_name(schema.get('items', {}))}]"
    return {"string": "str", "integer": "int", "number": "float", "boolean": "bool"}.get(str(kind), str(kind))


def format_tool_call(name: str, args: dict[str, Any]) -> str:
    """One call as the model is asked to write it."""
    payload = json.dumps({"name": name, "arguments": args}, ensure_ascii=False)
    return f"{TOOL_CALL_OPEN}\n{payload}\n{TOOL_CALL_CLOSE}"


def parse_tool_calls(text: str) -> tuple[str, list[dict[str, Any]]]:
    """Split model output into its text and its tool calls (`{"name", "args", "id"}` dicts).

    Every `<tool_call>` block is removed from the text, including blocks whose JSON cannot be
    read: showing a user half a JSON object helps nobody, and a call we cannot read is dropped.
    """
    calls: list[dict[str, Any]] = []
    for match in _TOOL_CALL_BLOCK.finditer(text):
        call = _read_call(match.group(1))
        if call is not None:
            name, args = call
            calls.append({"name": name, "args": args, "id": f"call_{len(calls)}_{uuid.uuid4().hex[:8]}"})
    return _TOOL_CALL_BLOCK.sub("", text).strip(), calls


def _read_call(body: str) -> tuple[str, dict[str, Any]] | None:
    body = body.strip()
    start = body.find("{")
    if start < 0:
        return None
    payload = _first_json_value(body[start:])
    if not isinstance(payload, dict) or not isinstance(payload.get("name"), str) or not payload["name"]:
        return None
    args = payload.get("arguments", payload.get("parameters", {}))
    if isinstance(args, str):  # OpenAI-style: arguments as a JSON string
        try:
            args = json.loads(args) if args.strip() else {}
        except json.JSONDecodeError:
            return None
    if args is None:
        args = {}
    if not isinstance(args, dict):
        return None
    return payload["name"], args


def _first_json_value(text: str) -> Any:
    # raw_decode reads the first JSON value and ignores what follows (a stray brace, a comment).
    # A model cut off by max_new_tokens often drops the last brace or two, so try adding them.
    decoder = json.JSONDecoder()
    for suffix in ("", "}", "}}"):
        try:
            return decoder.raw_decode(text + suffix)[0]
        except json.JSONDecodeError:
            continue
    return None


def cut_at_stop(text: str, stop: Sequence[str]) -> tuple[str, bool]:
    """`text` up to the first of the `stop` strings, and whether one was found."""
    cuts = [i for i in (text.find(s) for s in stop if s) if i >= 0]
    return (text[: min(cuts)], True) if cuts else (text, False)


class StreamingSplitter:
    """Splits streamed model output into content safe to show now and, at the end, tool calls.

    Content is released as it arrives, except what might still turn out to be the start of a
    `<tool_call>` block or of a stop string, and trailing whitespace (`parse_tool_calls` strips
    it). Once a block opens, the rest is held for `finish`. The content released plus the content
    `finish` returns equals what `parse_tool_calls` gives for the whole text, so a streamed answer
    aggregates to the same message as a non-streamed one.
    """

    def __init__(self, stop: Sequence[str] = ()) -> None:
        self._stop = [s for s in stop if s]
        self._markers = [TOOL_CALL_OPEN, *self._stop]
        self._text = ""
        self._released = ""
        self._in_call = False
        self.stopped = False  # a stop string was seen: the caller may end generation

    def feed(self, piece: str) -> str:
        """Take the next piece of output; return the content that can be shown now."""
        if self.stopped:
            return ""
        self._text, self.stopped = cut_at_stop(self._text + piece, self._stop)
        if self._in_call:
            return ""
        text = self._text.lstrip()
        open_at = text.find(TOOL_CALL_OPEN)
        if open_at >= 0:
            self._in_call = True
            end = open_at
        elif self.stopped:
            end = len(text)
        else:
            end = len(text) - max(_partial_marker_len(text, marker) for marker in self._markers)
        ready = text[:end].rstrip()
        fresh = ready[len(self._released) :]
        self._released = ready
        return fresh

    def finish(self) -> tuple[str, list[dict[str, Any]]]:
        """The content not yet released, and the tool calls of the whole output."""
        content, calls = parse_tool_calls(self._text)
        if not content.startswith(self._released):  # cannot happen by construction; never repeat text
            return "", calls
        return content[len(self._released) :], calls


def _partial_marker_len(text: str, marker: str) -> int:
    """Length of the longest proper prefix of `marker` that `text` ends with."""
    for size in range(min(len(marker) - 1, len(text)), 0, -1):
        if text.endswith(marker[:size]):
            return size
    return 0
