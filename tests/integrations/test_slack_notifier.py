"""Alert threads: one Slack message per alert group, updated in place, resolved; 429s honour Retry-After."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from detectors import Detector
from integrations.notifier import IncidentNotice, NotifierError
from integrations.slack_config import SlackConfig, web_client
from integrations.slack_notifier import SlackNotifier
from integrations.slack_state import SlackState
from knowledge.store import IncidentStore
from tests.integrations.fake_slack import FakeSlack
from tests.integrations.slack_support import (
    ALERTS,
    BOT_TOKEN,
    TOKEN,
    fake_slack_api,
    slack_settings,
    slack_world,
    text_of,
)

FIXTURES = Path(__file__).parent / "fixtures"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
NOTICE = IncidentNotice(
    incident_id="6f1e8f7a-0000-5000-8000-000000000001",
    group_key='{}:{alertname="CheckoutRetryStorm"}',
    status="firing",
    alert_names=["CheckoutRetryStorm"],
    verdict="anomalous",
    probability=0.95,
    category="network_timeout",
    triage_status="ok",
    explanation="The sequence looks anomalous (network_timeout), p=0.95.",
)


@pytest.fixture
def fake() -> Iterator[FakeSlack]:
    with fake_slack_api() as api:
        yield api


def alert(payload: dict[str, Any], index: int, status: str) -> dict[str, Any]:
    one = json.loads(json.dumps(payload))
    one["alerts"] = [one["alerts"][index]]
    one["alerts"][0]["status"] = status
    return one


@pytest.mark.slow
def test_an_alert_group_is_one_thread_updated_in_place_then_resolved(
    tmp_path: Path,
    fake: FakeSlack,
    shipped_detector: Detector,
    incident_store: IncidentStore,
    retry_storm: list[str],
) -> None:
    payload = json.loads((FIXTURES / "alertmanager_v4.json").read_text())
    payload["alerts"][0]["annotations"]["logs"] = "\n".join(retry_storm)
    settings = slack_settings(tmp_path / "data", fake)
    with slack_world(settings, shipped_detector, incident_store, fake) as slack:
        for step in (alert(payload, 0, "firing"), alert(payload, 1, "firing")):
            assert slack.client.post("/webhooks/alertmanager", json=step, headers=AUTH).status_code == 202
            assert slack.deps.workers.drain(timeout=60)
        (head,) = fake.of("chat.postMessage")
        assert head.args["channel"] == ALERTS and head.token == BOT_TOKEN and "thread_ts" not in head.args
        assert re.fullmatch(
            r"\[firing\] PaymentErrorRate: anomalous p=[01]\.\d\d \(network_timeout\)", head.args["text"]
        )
        (update,) = fake.of("chat.update")
        assert update.args["ts"] == head.answer["ts"]
        assert "PaymentErrorRate, PaymentLatencyHigh" in text_of(update.args["blocks"])

        for step in (alert(payload, 0, "resolved"), alert(payload, 1, "resolved")):
            slack.client.post("/webhooks/alertmanager", json=step, headers=AUTH)
            assert slack.deps.workers.drain(timeout=60)
        updates = fake.of("chat.update")
        partly, resolved = updates[1], updates[2]
        assert "PaymentErrorRate (resolved), PaymentLatencyHigh (firing)" in text_of(partly.args["blocks"])
        shown = text_of(resolved.args["blocks"])
        assert shown.startswith(":large_green_circle: *RESOLVED*  PaymentErrorRate, PaymentLatencyHigh")
        assert "*ANOMALOUS* p=" in shown and "*network_timeout*" in shown  # the resolution keeps the triage
        (_, reply) = fake.of("chat.postMessage")
        assert reply.args["thread_ts"] == head.answer["ts"]
        assert reply.args["text"] == ":large_green_circle: resolved: PaymentLatencyHigh"
        incident_id = head.args["blocks"][-2]["elements"][0]["value"]
        assert "resolved at" in (slack.incident(incident_id).resolution or "")


@pytest.mark.slow
def test_a_reaction_on_an_alert_thread_is_feedback_on_the_groups_incident(
    tmp_path: Path,
    fake: FakeSlack,
    shipped_detector: Detector,
    incident_store: IncidentStore,
    retry_storm: list[str],
) -> None:
    body = {"alerts": [{"name": "db-retries", "group_key": "g1", "logs": retry_storm}]}
    settings = slack_settings(tmp_path / "data", fake)
    with slack_world(settings, shipped_detector, incident_store, fake) as slack:
        slack.client.post("/webhooks/generic", json=body, headers=AUTH)
        assert slack.deps.workers.drain(timeout=60)
        (head,) = fake.of("chat.postMessage")
        slack.reaction(True, "white_check_mark", head)
        (confirmation,) = fake.wait_for("chat.postEphemeral")
        incident_id = head.args["blocks"][-2]["elements"][0]["value"]
        assert confirmation.args["thread_ts"] == head.answer["ts"]
        assert slack.incident(incident_id).label == 1 and slack.incident(incident_id).source == "webhook"


def notifier(fake: FakeSlack, tmp_path: Path, max_retry_after_s: float = 30.0) -> SlackNotifier:
    config = SlackConfig(
        bot_token=BOT_TOKEN, signing_secret="s", api_url=fake.api_url, max_retry_after_s=max_retry_after_s
    )
    return SlackNotifier(web_client(config), ALERTS, SlackState(tmp_path / "slack.sqlite"))


def test_a_rate_limited_post_waits_for_retry_after_then_succeeds(fake: FakeSlack, tmp_path: Path) -> None:
    fake.rate_limit_once("chat.postMessage", retry_after=1)
    notifier(fake, tmp_path).notify(NOTICE)
    limited, posted = [c for c in fake.calls if c.method == "chat.postMessage"]
    assert (limited.status, posted.status) == (429, 200)
    assert posted.at - limited.at >= 1.0


def test_a_retry_after_beyond_the_limit_is_a_retryable_notifier_error(
    fake: FakeSlack, tmp_path: Path
) -> None:
    fake.rate_limit_once("chat.postMessage", retry_after=120)
    with pytest.raises(NotifierError) as raised:
        notifier(fake, tmp_path, max_retry_after_s=5).notify(NOTICE)
    assert raised.value.retryable and raised.value.status == 429
    assert [c.status for c in fake.calls] == [429]


def test_a_rejected_post_is_a_permanent_notifier_error(fake: FakeSlack, tmp_path: Path) -> None:
    fake.error_once("chat.postMessage", "channel_not_found")
    with pytest.raises(NotifierError) as raised:
        notifier(fake, tmp_path).notify(NOTICE)
    assert not raised.value.retryable and raised.value.reason == "HTTP 200: channel_not_found"
