"""The LLM side of triage: turns a grounded answer into a short explanation.

Implements `tools.Explainer`. Every prompt is redacted first, and any failure of the model,
including running past its time budget, becomes `ExplanationFailed`, so triage degrades to the
grounded answer instead of failing.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence

from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, BaseMessage, HumanMessage, SystemMessage

from assistant.answer_format import ProseStream, readable_explanation, true_incident_labels
from assistant.prompts import SYSTEM_TRIAGE, triage_user_message
from assistant.redaction import RedactionPolicy, redact
from tools.answer import Answer
from tools.context import ExplanationFailed


def redact_messages(messages: Sequence[BaseMessage], policy: RedactionPolicy) -> list[BaseMessage]:
    """Copies of `messages` with secrets redacted from every text part and tool-call argument."""
    cleaned: list[BaseMessage] = []
    for message in messages:
        update: dict[str, object] = {}
        if isinstance(message.content, str):
            update["content"] = redact(message.content, policy)
        if isinstance(message, AIMessage) and message.tool_calls:
            update["tool_calls"] = [
                {**call, "args": _redact_value(call["args"], policy)} for call in message.tool_calls
            ]
        cleaned.append(message.model_copy(update=update))
    return cleaned


def _redact_value(value: object, policy: RedactionPolicy) -> object:
    if isinstance(value, str):
        return redact(value, policy)
    if isinstance(value, list):
        return [_redact_value(v, policy) for v in value]
    if isinstance(value, dict):
        return {k: _redact_value(v, policy) for k, v in value.items()}
    return value


class LLMExplainer:
    """Explains verdicts with a LangChain chat model (local transformers or OpenAI-compatible)."""

    def __init__(self, model: BaseChatModel, redaction: RedactionPolicy | None = None) -> None:
        self.model = model
        self.redaction = redaction or RedactionPolicy()

    def messages_for(self, answer: Answer) -> list[BaseMessage]:
        return redact_messages(
            [SystemMessage(SYSTEM_TRIAGE), HumanMessage(triage_user_message(answer))], self.redaction
        )

    def explain(self, answer: Answer, lines: list[str], on_token: Callable[[str], None] | None = None) -> str:
        messages = self.messages_for(answer)
        parts: list[str] = []
        shown = ProseStream(on_token, fix=lambda prose: true_incident_labels(prose, answer))
        try:
            # Streaming lets a terminal or Slack show tokens as they come; the text is the same.
            for chunk in self.model.stream(messages):
                text = chunk.content if isinstance(chunk.content, str) else ""
                if text:
                    parts.append(text)
                    shown.feed(text)
        except Exception as err:  # the boundary to the LLM: any failure there degrades, never crashes
            raise ExplanationFailed(_describe(err)) from err
        final = readable_explanation("".join(parts), answer, tidy=drop_repeated_sentences)
        shown.finish(final)
        return final.strip()


_SENTENCE_END = re.compile(r"(?<=[.!?])\s+|\n+")


def drop_repeated_sentences(text: str) -> str:
    """Cut the text where a small model starts repeating itself (a sentence it already wrote)."""
    seen: set[str] = set()
    kept: list[str] = []
    for sentence in _SENTENCE_END.split(text):
        key = " ".join(sentence.lower().split())
        if not key:
            continue
        if key in seen:
            break
        seen.add(key)
        kept.append(sentence.strip())
    return " ".join(kept)


def _describe(err: Exception) -> str:
    text = str(err).strip().splitlines()[0] if str(err).strip() else ""
    return f"{type(err).__name__}: {text}" if text else type(err).__name__
