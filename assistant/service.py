"""The assistant's facade: triage logs or answer a question in a thread, optionally streaming tokens.

    assistant = Assistant(deps, checkpointer)
    answer = assistant.triage(lines, thread_id="t1", caller=Caller(user="ana", source="cli", authenticated=True))
    reply = assistant.ask("why?", thread_id="t1", caller=...)

Thread memory lives in the checkpointer (SQLite under the data dir by default), keyed by thread id.
"""

from __future__ import annotations

import sqlite3
import uuid
from collections.abc import Callable, Sequence
from functools import partial
from pathlib import Path
from typing import Any, cast

from langchain_core.messages import AIMessage, AIMessageChunk, HumanMessage, ToolMessage
from langchain_core.runnables import RunnableConfig
from langgraph.checkpoint.base import BaseCheckpointSaver
from langgraph.checkpoint.sqlite import SqliteSaver
from pydantic import BaseModel, Field

from assistant.answer_format import ProseStream, true_incident_labels
from assistant.graph import AssistantDeps, ThreadState, build_graph, current_answer
from tools.answer import Answer, Status
from tools.context import Caller

TokenSink = Callable[[str], None]
_STREAMING_NODES = {"explain": "explanation", "agent": "reply"}


class ChatReply(BaseModel):
    """The assistant's reply to a question in a thread."""

    thread_id: str
    text: str
    status: Status = Field(description="degraded when the LLM failed and the reply is the tools' facts")
    tool_calls: list[str] = Field(
        default_factory=list, description="the tools called for this reply, in order"
    )
    answer: Answer | None = Field(default=None, description="the thread's current triage, if any")


def new_thread_id() -> str:
    return uuid.uuid4().hex[:12]


def sqlite_checkpointer(path: Path) -> SqliteSaver:
    """Thread memory in a SQLite file (created with its folder). Safe to share between threads."""
    path.parent.mkdir(parents=True, exist_ok=True)
    connection = sqlite3.connect(str(path), check_same_thread=False)
    saver = SqliteSaver(connection)
    saver.setup()
    return saver


class Assistant:
    def __init__(self, deps: AssistantDeps, checkpointer: BaseCheckpointSaver) -> None:
        self.deps = deps
        self.graph = build_graph(deps).compile(checkpointer=checkpointer)

    def triage(
        self,
        lines: Sequence[str] | str,
        *,
        thread_id: str,
        caller: Caller,
        remember: bool = False,
        source_id: str = "",
        on_token: TokenSink | None = None,
        on_verdict: Callable[[Answer], None] | None = None,
    ) -> Answer:
        """The full answer for some logs; the thread remembers it for follow-up questions.

        `on_verdict` gets the grounded answer (verdict, evidence, similar incidents) as soon as it
        is known, before the LLM starts; `on_token` gets the explanation as it is written.
        Raises ToolInputError when the lines are empty or over the limits.
        """
        raw = lines.splitlines() if isinstance(lines, str) else list(lines)
        request: ThreadState = {
            "request": "triage",
            "lines": raw,
            "remember": remember,
            "source_id": source_id,
        }
        state = self._run(request, thread_id, caller, on_token, on_verdict)
        answer = current_answer(state)
        assert answer is not None
        return answer

    def ask(
        self, question: str, *, thread_id: str, caller: Caller, on_token: TokenSink | None = None
    ) -> ChatReply:
        """Answer a question in a thread; the LLM may call tools (feedback only when asked to)."""
        if not question.strip():
            raise ValueError("the question is empty; ask something, e.g. 'why?'")
        before = len(self.history(thread_id))
        state = self._run(
            {"request": "chat", "messages": [HumanMessage(question)], "rounds": 0},
            thread_id,
            caller,
            on_token,
        )
        new = state.get("messages", [])[before:]
        last = new[-1] if new else AIMessage("")
        calls = [m.name or "" for m in new if isinstance(m, ToolMessage)]
        degraded = isinstance(last, AIMessage) and last.name == "fallback"
        return ChatReply(
            thread_id=thread_id,
            text=str(last.content),
            status="degraded" if degraded else "ok",
            tool_calls=calls,
            answer=current_answer(state),
        )

    def history(self, thread_id: str) -> list[Any]:
        snapshot = self.graph.get_state(_config(thread_id, Caller()))
        return list(snapshot.values.get("messages", [])) if snapshot and snapshot.values else []

    def _run(
        self,
        request: ThreadState,
        thread_id: str,
        caller: Caller,
        on_token: TokenSink | None,
        on_verdict: Callable[[Answer], None] | None = None,
    ) -> ThreadState:
        config = _config(thread_id, caller)
        if on_token is None and on_verdict is None:
            return self.graph.invoke(request, config)  # type: ignore[return-value]
        # Explanations stream as prose: the report line is held back, its next step sent at the end.
        prose = ProseStream(on_token)
        for mode, payload in self.graph.stream(request, config, stream_mode=["messages", "updates"]):
            if mode == "updates":
                update = cast(dict[str, Any], payload).get("assess")
                if update and update.get("answer"):
                    assessed = Answer.model_validate(update["answer"])
                    # The LLM's labels for similar incidents are checked as they stream.
                    prose.fix = partial(true_incident_labels, answer=assessed)
                    if on_verdict is not None:
                        on_verdict(assessed)
            elif on_token is not None:
                chunk, metadata = cast(tuple[Any, dict[str, Any]], payload)
                node = metadata.get("langgraph_node")
                if node in _STREAMING_NODES and isinstance(
                    chunk, AIMessageChunk
                ):  # tokens, not whole messages
                    text = chunk.content if isinstance(chunk.content, str) else ""
                    if text and node == "explain":
                        prose.feed(text)
                    elif text:
                        on_token(text)
        state = cast(ThreadState, self.graph.get_state(config).values)
        explanation = (state.get("answer") or {}).get("explanation") or ""
        if prose.sent and "\n\n" in explanation:  # the LLM's part follows the grounded summary
            prose.finish(explanation.split("\n\n", 1)[1])
        return state


def _config(thread_id: str, caller: Caller) -> RunnableConfig:
    if not thread_id:
        raise ValueError("a thread id is needed; new_thread_id() makes one")
    return {"configurable": {"thread_id": thread_id, "caller": caller}}
