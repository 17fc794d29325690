"""One fine-tuning example, how it is stored, split and rendered for a model.

An example is a chat (system, user, assistant and tool turns) whose last turn is the assistant's
answer to learn. It is rendered with the assistant's own prompt code (`assistant.hermes`), so the
text a model is trained on is the text it is sent at inference, for any chat template.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any, Literal

from langchain_core.messages import AIMessage, BaseMessage, HumanMessage, SystemMessage, ToolMessage
from langchain_core.utils.function_calling import convert_to_openai_tool
from pydantic import BaseModel, ConfigDict, Field

from assistant.graph import CHAT_TOOLS
from assistant.hermes import ChatTemplateTokenizer, render_conversation, render_prompt
from assistant.lc_tools import chat_tools

Kind = Literal["triage", "tool_call", "tool_answer", "chat", "seed", "feedback"]
Split = Literal["train", "heldout"]
HELDOUT_PERCENT = 10  # share of examples held out for evaluation, chosen by a hash of the id


class Turn(BaseModel):
    """One chat turn. An assistant turn may carry tool calls; a tool turn answers the one before."""

    model_config = ConfigDict(extra="forbid")

    role: Literal["system", "user", "assistant", "tool"]
    content: str = ""
    tool_calls: list[dict[str, Any]] = Field(default_factory=list)  # [{"name", "arguments"}]


class Expected(BaseModel):
    """What evaluation checks in the model's answer to this example."""

    status: str | None = None  # "anomalous" | "normal" | "inconclusive" (seed data: "Normal" | "Abnormal")
    category: str | None = None
    evidence: list[int] = Field(default_factory=list)  # 1-based evidence line numbers the facts show
    tool_call: dict[str, Any] | None = None  # {"name", "arguments"}; None: no call expected
    expects_tool_decision: bool = False  # tool_call is meaningful (chat and tool_call kinds)


class SFTExample(BaseModel):
    id: str
    kind: Kind
    turns: list[Turn] = Field(min_length=2)
    tools: bool = False  # the chat tools are offered, as the chat path offers them
    expected: Expected = Field(default_factory=Expected)

    @property
    def split(self) -> Split:
        return split_of(self.id)


def split_of(example_id: str) -> Split:
    """Deterministic: the same id always lands in the same split, whatever else is in the data."""
    bucket = int(hashlib.sha256(example_id.encode()).hexdigest()[:8], 16) % 100
    return "heldout" if bucket < HELDOUT_PERCENT else "train"


def stable_id(*parts: object) -> str:
    return hashlib.sha256(json.dumps(parts, default=str).encode()).hexdigest()[:16]


def chat_tool_schemas() -> list[dict[str, Any]]:
    """The OpenAI-format schemas of the tools the chat path offers (no tool context needed)."""
    return [convert_to_openai_tool(tool) for tool in chat_tools(None, CHAT_TOOLS)]  # type: ignore[arg-type]


def to_messages(turns: Sequence[Turn]) -> list[BaseMessage]:
    messages: list[BaseMessage] = []
    pending: list[str] = []  # ids of tool calls still waiting for their result
    for i, turn in enumerate(turns):
        if turn.role == "system":
            messages.append(SystemMessage(turn.content))
        elif turn.role == "user":
            messages.append(HumanMessage(turn.content))
        elif turn.role == "assistant":
            calls = [
                {"name": c["name"], "args": c.get("arguments", {}), "id": f"call_{i}_{n}"}
                for n, c in enumerate(turn.tool_calls)
            ]
            pending = [c["id"] for c in calls]
            messages.append(AIMessage(turn.content, tool_calls=calls))
        else:
            call_id = pending.pop(0) if pending else f"call_{i}"
            messages.append(ToolMessage(turn.content, tool_call_id=call_id))
    return messages


def prompt_and_completion(
    example: SFTExample, tokenizer: ChatTemplateTokenizer, tools: Sequence[dict[str, Any]] | None
) -> tuple[str, str]:
    """The generation prompt (every turn but the last) and the answer text to learn, ending with
    the template's end-of-turn token."""
    if example.turns[-1].role != "assistant":
        raise ValueError(f"example {example.id}: the last turn must be the assistant's answer")
    offered = tools if example.tools else None
    messages = to_messages(example.turns)
    prompt = render_prompt(tokenizer, messages[:-1], offered)
    full = render_conversation(tokenizer, messages, offered, add_generation_prompt=False)
    if not full.startswith(prompt):
        raise ValueError(
            f"example {example.id}: the chat template renders the prompt differently inside the whole "
            "conversation, so the answer cannot be cut out of it"
        )
    return prompt, full[len(prompt) :].rstrip("\n")


def write_examples(examples: Iterable[SFTExample], path: Path) -> int:
    path.parent.mkdir(parents=True, exist_ok=True)
    n = 0
    with path.open("w", encoding="utf-8") as out:
        for example in examples:
            out.write(example.model_dump_json(exclude_defaults=True) + "\n")
            n += 1
    return n


def read_examples(path: Path) -> Iterator[SFTExample]:
    with path.open(encoding="utf-8") as lines:
        for number, line in enumerate(lines, 1):
            if line.strip():
                try:
                    yield SFTExample.model_validate_json(line)
                except ValueError as err:
                    raise ValueError(f"{path}:{number}: not a fine-tuning example: {err}") from err


def in_split(examples: Iterable[SFTExample], split: Split) -> list[SFTExample]:
    return [e for e in examples if e.split == split]
