"""Answering in Slack: triage logs into a thread (the fast answer, then the explanation), or a follow-up.

The fast answer is posted from the assistant's `on_verdict` callback, as soon as the detector and
the incident memory have spoken and before the LLM starts; the explanation then replaces the
"on its way" line with chat.update (and, for long explanations, streams into it every few seconds).
Each answer is recorded in `SlackState`, so reactions and buttons on it find its incident, and a
follow-up in its thread finds its assistant thread.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError

from assistant.service import Assistant
from integrations.slack_blocks import answer_blocks, escape
from integrations.slack_config import SlackConfig
from integrations.slack_feedback import Confirmation, SlackFeedback, slack_caller
from integrations.slack_state import AnswerRef, SlackState
from tools import Answer, ToolContext
from tools.grounding import grounded_summary

logger = logging.getLogger(__name__)

Respond = Callable[..., Any]


@dataclass(frozen=True)
class SlackDeps:
    """What the Slack listeners use, built once by the entry point (server lifespan or `logtriage slack`)."""

    assistant: Assistant
    state: SlackState
    config: SlackConfig

    @property
    def tools(self) -> ToolContext:
        return self.assistant.deps.tools

    def feedback(self) -> SlackFeedback:
        return SlackFeedback(self.tools, self.state, self.config.reactions)

    def close(self) -> None:
        self.state.close()


@dataclass(frozen=True)
class Where:
    """Where an answer goes and on whose behalf."""

    channel: str
    user: str
    thread_id: str  # the assistant thread (thread memory)
    root_ts: str | None  # the Slack thread to reply in; None: the answer starts a new one


def llm_text(answer: Answer) -> str | None:
    """The LLM's part of the explanation (the facts before it are already in the blocks)."""
    text = (answer.explanation or "").strip()
    summary = grounded_summary(answer)
    if summary and text.startswith(summary):
        text = text[len(summary) :].strip()
    return text or None


class _Streaming:
    """Shows the explanation as it is written: at most one chat.update per `interval_s`."""

    def __init__(self, interval_s: float, show: Callable[[str], None]) -> None:
        self.interval_s = interval_s
        self.show = show
        self.parts: list[str] = []
        self.last = time.monotonic()
        self.ready = False  # set once the fast answer is posted

    def token(self, text: str) -> None:
        self.parts.append(text)
        now = time.monotonic()
        if self.ready and now - self.last >= self.interval_s:
            self.last = now
            self.show("".join(self.parts).strip() + " …")


def triage_into_thread(
    deps: SlackDeps, client: WebClient, where: Where, lines: list[str], *, intro: str = ""
) -> Answer:
    """Post the fast answer, then update it with the explanation. Returns the final answer."""
    links = deps.config.incident_link
    explaining = deps.tools.explainer is not None
    posted: dict[str, Any] = {}

    def show(answer: Answer, blocks: list[dict[str, Any]]) -> None:
        client.chat_update(
            channel=posted["channel"], ts=posted["ts"], text=intro + answer.headline(), blocks=blocks
        )

    def on_verdict(answer: Answer) -> None:
        blocks = answer_blocks(answer, pending=explaining, links=links)
        if intro:
            blocks.insert(0, {"type": "context", "elements": [{"type": "mrkdwn", "text": intro}]})
        response = client.chat_postMessage(
            channel=where.channel, thread_ts=where.root_ts, text=intro + answer.headline(), blocks=blocks
        )
        channel, ts = str(response["channel"]), str(response["ts"])
        posted.update(channel=channel, ts=ts, answer=answer, intro_blocks=blocks[:1] if intro else [])
        if answer.incident_id:
            deps.state.record_answer(
                AnswerRef(channel, ts, answer.incident_id, where.thread_id, where.root_ts or ts)
            )
        streaming.ready = True

    def partial(text: str) -> None:
        shown: Answer = posted["answer"]
        show(shown, posted["intro_blocks"] + answer_blocks(shown, explanation=text, links=links))

    streaming = _Streaming(deps.config.stream_update_s, partial)
    answer = deps.assistant.triage(
        lines,
        thread_id=where.thread_id,
        caller=slack_caller(where.user),
        remember=True,
        on_verdict=on_verdict,
        on_token=streaming.token if explaining else None,
    )
    if not posted:  # the graph always reports the verdict first; this only guards a future change
        on_verdict(answer)
    if explaining:
        show(
            answer, posted["intro_blocks"] + answer_blocks(answer, explanation=llm_text(answer), links=links)
        )
    return answer


def answer_question(deps: SlackDeps, client: WebClient, where: Where, question: str) -> str:
    """A follow-up in the thread, with the thread's memory (its latest triage included)."""
    reply = deps.assistant.ask(question, thread_id=where.thread_id, caller=slack_caller(where.user))
    text = escape(reply.text) or "I have nothing to add."
    client.chat_postMessage(channel=where.channel, thread_ts=where.root_ts, text=text)
    return reply.text


def confirm(client: WebClient, confirmation: Confirmation | None, fallback: Where | None = None) -> None:
    """The ephemeral confirmation of a piece of feedback (or why nothing was recorded)."""
    if confirmation is not None:
        tell(client, confirmation.channel, confirmation.user, confirmation.thread_ts, confirmation.text)
    elif fallback is not None:
        text = "That message is not one of my answers, so there is nothing to give feedback on."
        tell(client, fallback.channel, fallback.user, fallback.root_ts, text)


def tell(
    client: WebClient,
    channel: str,
    user: str,
    thread_ts: str | None,
    text: str,
    respond: Respond | None = None,
) -> None:
    """A message only `user` sees. Failing to deliver it is logged, never raised."""
    try:
        if respond is not None:
            respond(text=text, response_type="ephemeral", replace_original=False)
        else:
            client.chat_postEphemeral(channel=channel, user=user, thread_ts=thread_ts, text=text)
    except (SlackApiError, OSError) as err:
        logger.warning("could not tell %s in %s: %s", user, channel, err)
