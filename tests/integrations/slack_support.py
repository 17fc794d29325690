"""The Slack app under test: `logtriage serve`'s app with Slack configured, and signed Slack requests.

Requests are signed with a test signing secret and sent to the real Bolt app through the server
(FastAPI's test client); the app's outbound Web API calls go to `FakeSlack` on loopback. The
detector, the incident store, the assistant and Bolt are real; the LLM is off or scripted.
"""

from __future__ import annotations

import itertools
import json
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import httpx
from fastapi.testclient import TestClient
from langchain_core.language_models import BaseChatModel
from slack_sdk.signature import SignatureVerifier

from assistant.explainer import LLMExplainer
from assistant.graph import AssistantDeps
from assistant.service import Assistant, sqlite_checkpointer
from detectors import Detector
from integrations.server import create_app
from integrations.server_deps import ServerDeps, assemble, slack_deps
from integrations.settings import Settings
from knowledge.records import Incident
from knowledge.store import IncidentStore
from tests.integrations.fake_slack import TEAM, Call, FakeSlack
from tests.integrations.loopback import serving
from tools import REGISTRY, Caller, ToolContext

SECRET = "signing-secret-for-tests"
BOT_TOKEN = "xoxb-test-token"
CHANNEL = "C0LOGS"
ALERTS = "C0ALERTS"
USER = "U0ANA"
TOKEN = "api-token-for-tests"

_ts = itertools.count(100)


def new_ts() -> str:
    """A message timestamp no other message in the run has."""
    return f"1699999999.{next(_ts):06d}"


@contextmanager
def fake_slack_api() -> Iterator[FakeSlack]:
    fake = FakeSlack()
    with serving(fake.app) as url:
        fake.url = url
        yield fake


def slack_settings(data_dir: Path, fake: FakeSlack, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "data_dir": data_dir,
        "api_token": TOKEN,
        "llm_backend": "none",
        "slack_bot_token": BOT_TOKEN,
        "slack_signing_secret": SECRET,
        "slack_api_url": fake.api_url,
        "slack_alert_channel": ALERTS,
        "slack_incident_url": "https://logtriage.test/incidents/{id}",
        **overrides,
    }
    return Settings(**values)


def signed_headers(
    body: str, content_type: str, *, secret: str = SECRET, at: float | None = None
) -> dict[str, str]:
    timestamp = str(int(at if at is not None else time.time()))
    signature = SignatureVerifier(secret).generate_signature(timestamp=timestamp, body=body)
    return {
        "Content-Type": content_type,
        "X-Slack-Request-Timestamp": timestamp,
        "X-Slack-Signature": signature,
    }


@dataclass
class SlackWorld:
    client: TestClient
    deps: ServerDeps
    fake: FakeSlack

    # -- requests from Slack --

    def post(self, path: str, body: str, content_type: str, **headers: str) -> httpx.Response:
        return self.client.post(path, content=body, headers={**signed_headers(body, content_type), **headers})

    def event(
        self,
        event: dict[str, Any],
        *,
        event_id: str | None = None,
        team: str = TEAM,
        retry_num: int | None = None,
    ) -> httpx.Response:
        envelope = {
            "token": "legacy",
            "team_id": team,
            "api_app_id": "A0LOGTRIAGE",
            "type": "event_callback",
            "event": event,
            "event_id": event_id or f"Ev{new_ts().replace('.', '')}",
            "event_time": int(time.time()),
        }
        extra = (
            {"X-Slack-Retry-Num": str(retry_num), "X-Slack-Retry-Reason": "http_timeout"} if retry_num else {}
        )
        return self.post("/slack/events", json.dumps(envelope), "application/json", **extra)

    def mention(
        self, text: str, *, ts: str, thread_ts: str | None = None, channel: str = CHANNEL, user: str = USER
    ) -> httpx.Response:
        event = {"type": "app_mention", "user": user, "text": f"<@UBOT> {text}", "ts": ts, "channel": channel}
        if thread_ts:
            event["thread_ts"] = thread_ts
        return self.event(event)

    def reaction(self, added: bool, reaction: str, answer: Call, *, user: str = USER) -> httpx.Response:
        item = {"type": "message", "channel": answer.args["channel"], "ts": self.ts_of(answer)}
        event = {
            "type": "reaction_added" if added else "reaction_removed",
            "user": user,
            "reaction": reaction,
            "item": item,
            "item_user": "UBOT",
            "event_ts": new_ts(),
        }
        return self.event(event)

    def interaction(self, payload: dict[str, Any]) -> httpx.Response:
        body = urlencode({"payload": json.dumps(payload)})
        return self.post("/slack/interactions", body, "application/x-www-form-urlencoded")

    def command(self, text: str, *, channel: str = CHANNEL, user: str = USER) -> httpx.Response:
        form = {
            "token": "legacy",
            "team_id": TEAM,
            "channel_id": channel,
            "user_id": user,
            "command": "/logtriage",
            "text": text,
            "response_url": f"{self.fake.url}/api/response_url",
            "trigger_id": "trigger-1",
        }
        return self.post("/slack/commands", urlencode(form), "application/x-www-form-urlencoded")

    # -- what the app did --

    def answer_in(self, thread_ts: str) -> Call:
        """The bot's first answer posted in this thread."""
        (call,) = self.fake.wait_for("chat.postMessage", where=lambda c: c.args.get("thread_ts") == thread_ts)
        return call

    def ts_of(self, posted: Call) -> str:
        """The ts the fake gave the message a chat.postMessage call posted."""
        return str(posted.answer["ts"])

    def ephemeral(self, count: int) -> list[Call]:
        return self.fake.wait_for("chat.postEphemeral", count)

    def incident(self, incident_id: str) -> Incident:
        answer = REGISTRY["get_incident"].call(self.deps.tools, {"incident_id": incident_id}, Caller())
        assert answer.incident is not None
        return answer.incident


def text_of(blocks: list[dict[str, Any]]) -> str:
    """Every text in a Block Kit message, one per line (for asserting what a reader sees)."""
    parts: list[str] = []
    for block in blocks:
        if "text" in block:
            parts.append(block["text"]["text"])
        for element in block.get("elements", []):
            text = element.get("text")
            parts.append(text["text"] if isinstance(text, dict) else str(text or ""))
    return "\n".join(parts)


@contextmanager
def slack_world(
    settings: Settings,
    detector: Detector,
    store: IncidentStore,
    fake: FakeSlack,
    chat_model: BaseChatModel | None = None,
    stream_update_s: float | None = None,
) -> Iterator[SlackWorld]:
    explainer = LLMExplainer(chat_model) if chat_model is not None else None
    tools = ToolContext(detector=detector, store=store, explainer=explainer)
    assistant = Assistant(
        AssistantDeps(tools=tools, chat_model=chat_model), sqlite_checkpointer(settings.threads_path)
    )
    slack = slack_deps(settings, assistant)
    if slack is not None and stream_update_s is not None:
        slack = replace(slack, config=replace(slack.config, stream_update_s=stream_update_s))
    deps = assemble(settings, detector, store, assistant, slack=slack)
    try:
        with TestClient(create_app(settings, deps)) as client:
            yield SlackWorld(client, deps, fake)
    finally:
        deps.queue.close()
        if deps.slack is not None:
            deps.slack.close()
