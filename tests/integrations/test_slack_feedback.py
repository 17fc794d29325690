"""Feedback from Slack: reactions, their removal, the buttons and the "Wrong" modal, read back from the store."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from detectors import Detector
from integrations.slack_blocks import CORRECT_ACTION, WRONG_ACTION, WRONG_MODAL
from knowledge.store import IncidentStore
from tests.integrations.fake_slack import Call
from tests.integrations.slack_support import (
    CHANNEL,
    USER,
    SlackWorld,
    fake_slack_api,
    new_ts,
    slack_settings,
    slack_world,
)
from tools import REGISTRY, Caller

pytestmark = pytest.mark.slow  # the real MiniLM encoder scores every pasted log


@pytest.fixture
def slack(tmp_path: Path, shipped_detector: Detector, incident_store: IncidentStore) -> Iterator[SlackWorld]:
    with fake_slack_api() as fake:
        settings = slack_settings(tmp_path / "data", fake)
        with slack_world(settings, shipped_detector, incident_store, fake) as world:
            yield world


def answered(slack: SlackWorld, lines: list[str]) -> tuple[Call, str]:
    """The bot's answer to a mention with these logs, and its incident id."""
    ts = new_ts()
    slack.mention("```" + "\n".join(lines) + "```", ts=ts)
    answer = slack.answer_in(ts)
    actions = next(b for b in answer.args["blocks"] if b["type"] == "actions")
    return answer, actions["elements"][0]["value"]


def votes(slack: SlackWorld, incident_id: str) -> list[tuple[str, int, bool, str | None, str]]:
    incident = slack.incident(incident_id)
    return [(v.user, v.label, v.verdict_correct, v.category, v.source) for v in incident.feedback]


def test_a_thumbs_down_reaction_marks_the_incident_false_positive_and_removing_it_reverts(
    slack: SlackWorld, retry_storm: list[str]
) -> None:
    answer, incident_id = answered(slack, retry_storm)
    assert slack.incident(incident_id).label is None

    assert slack.reaction(True, "-1", answer).status_code == 200
    (confirmation,) = slack.ephemeral(1)
    assert confirmation.args["user"] == USER and confirmation.args["channel"] == CHANNEL
    assert confirmation.args["thread_ts"] == answer.args["thread_ts"]
    assert "was wrong" in confirmation.args["text"] and "label is now normal" in confirmation.args["text"]
    incident = slack.incident(incident_id)
    assert (incident.label, incident.label_origin) == (0, "feedback")
    assert votes(slack, incident_id) == [(USER, 0, False, None, "slack")]

    slack.reaction(False, "-1", answer)
    reverted = slack.ephemeral(2)[1]
    assert "Took back your feedback" in reverted.args["text"]
    incident = slack.incident(incident_id)
    assert (incident.label, incident.feedback) == (None, [])


def test_the_detector_learns_from_a_reaction_at_once(slack: SlackWorld, retry_storm: list[str]) -> None:
    answer, _ = answered(slack, retry_storm)
    slack.reaction(True, "x", answer)
    slack.ephemeral(1)
    again = REGISTRY["score_logs"].call(slack.deps.tools, {"lines": retry_storm}, Caller())
    assert (again.verdict, again.decided_by) == ("normal", "memory")


def test_feedback_reactions_are_one_opinion_per_user(slack: SlackWorld, retry_storm: list[str]) -> None:
    answer, incident_id = answered(slack, retry_storm)
    slack.reaction(True, "x", answer)
    slack.reaction(True, "-1", answer)  # the same opinion again
    texts = sorted(c.args["text"].split(":")[0] for c in slack.ephemeral(2))
    assert texts == ["Already recorded", "Thanks, recorded"]
    slack.reaction(True, "white_check_mark", answer)  # changes their mind
    slack.ephemeral(3)
    assert votes(slack, incident_id) == [(USER, 1, True, None, "slack")]
    slack.reaction(False, "white_check_mark", answer)  # the wrong-reactions are still there
    slack.ephemeral(4)
    assert votes(slack, incident_id) == [(USER, 0, False, None, "slack")]
    slack.reaction(True, "+1::skin-tone-3", answer, user="U0BO")  # another user, another vote
    slack.ephemeral(5)
    assert sorted(votes(slack, incident_id)) == [
        (USER, 0, False, None, "slack"),
        ("U0BO", 1, True, None, "slack"),
    ]


def test_other_reactions_and_reactions_on_other_messages_write_nothing(
    slack: SlackWorld, retry_storm: list[str]
) -> None:
    answer, incident_id = answered(slack, retry_storm)
    slack.reaction(True, "eyes", answer)
    stranger = Call("chat.postMessage", {"channel": CHANNEL}, None, 0.0, 200, {"ts": "1600000000.000001"})
    slack.reaction(True, "x", stranger)
    slack.reaction(True, "x", answer)  # a marker: handled after the two above were dropped
    (only,) = slack.ephemeral(1)
    assert "was wrong" in only.args["text"]
    assert votes(slack, incident_id) == [(USER, 0, False, None, "slack")]


def click(slack: SlackWorld, answer: Call, action_id: str) -> None:
    ts = slack.ts_of(answer)
    payload = {
        "type": "block_actions",
        "team": {"id": "T1"},
        "user": {"id": USER},
        "channel": {"id": CHANNEL},
        "container": {"type": "message", "message_ts": ts, "channel_id": CHANNEL},
        "message": {"ts": ts, "text": answer.args["text"]},
        "trigger_id": "trigger-3",
        "response_url": f"{slack.fake.url}/api/response_url",
        "actions": [{"action_id": action_id, "block_id": "feedback", "type": "button", "value": "ignored"}],
    }
    assert slack.interaction(payload).status_code == 200


def test_the_correct_button_confirms_the_verdict(slack: SlackWorld, retry_storm: list[str]) -> None:
    answer, incident_id = answered(slack, retry_storm)
    click(slack, answer, CORRECT_ACTION)
    (confirmation,) = slack.ephemeral(1)
    assert (
        "was correct" in confirmation.args["text"] and "label is now anomalous" in confirmation.args["text"]
    )
    assert votes(slack, incident_id) == [(USER, 1, True, None, "slack")]


def submitted(view: dict[str, Any], category: str | None, note: str) -> dict[str, Any]:
    selected = {"value": category, "text": {"type": "plain_text", "text": category}} if category else None
    values = {
        "category": {"category": {"type": "static_select", "selected_option": selected}},
        "note": {"note": {"type": "plain_text_input", "value": note}},
    }
    return {
        "type": "view_submission",
        "team": {"id": "T1"},
        "user": {"id": USER},
        "view": {**view, "id": "V1", "state": {"values": values}},
    }


@pytest.mark.parametrize(
    ("category", "expected"),
    [
        ("normal", (USER, 0, False, "normal", "slack")),
        ("resource_exhaustion", (USER, 1, True, "resource_exhaustion", "slack")),
        (None, (USER, 0, False, None, "slack")),
    ],
    ids=["not-an-anomaly", "another-category", "no-category"],
)
def test_the_wrong_button_opens_a_modal_whose_submission_records_the_category_and_note(
    slack: SlackWorld, retry_storm: list[str], category: str | None, expected: tuple[Any, ...]
) -> None:
    answer, incident_id = answered(slack, retry_storm)
    click(slack, answer, WRONG_ACTION)
    (opened,) = slack.fake.wait_for("views.open")
    view = opened.args["view"]
    assert opened.args["trigger_id"] == "trigger-3" and view["callback_id"] == WRONG_MODAL
    options = [o["value"] for o in view["blocks"][0]["element"]["options"]]
    assert "normal" in options and "resource_exhaustion" in options
    assert json.loads(view["private_metadata"]) == {"channel": CHANNEL, "ts": slack.ts_of(answer)}

    response = slack.interaction(submitted(view, category, "planned failover of the db"))
    assert response.status_code == 200 and response.text == ""  # an empty ack closes the modal
    (confirmation,) = slack.ephemeral(1)
    assert "Thanks, recorded" in confirmation.args["text"]
    assert votes(slack, incident_id) == [expected]
    assert slack.incident(incident_id).feedback[0].note == "planned failover of the db"
