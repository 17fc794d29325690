"""Block Kit rendering: what an answer and an alert notice show, and that log text cannot break out."""

from __future__ import annotations

from datetime import UTC, datetime

from detectors.results import LineEvidence
from integrations.notifier import IncidentNotice
from integrations.slack_blocks import MAX_LINE, answer_blocks, notice_blocks
from knowledge.records import SimilarIncident
from tests.integrations.slack_support import text_of
from tools import Answer

IID = "7539ed74-cd0b-5260-ae80-bb1e125472f9"
PAST = SimilarIncident(
    id="8e7fd11f-e11e-510b-abb9-c722e76ad2d2",
    similarity=0.981,
    label=1,
    category="network_timeout",
    verdict="anomalous",
    resolution="db failover <@U123> & restart",
    link=None,
    created_at=datetime(2026, 11, 22, tzinfo=UTC),
    source="import",
    preview=[],
    duplicates=2,
)


def answer(line: str, **changes: object) -> Answer:
    evidence = [LineEvidence(index=12, line=line, template=line, contribution=1.5)]
    values: dict[str, object] = {
        "tool": "triage",
        "status": "ok",
        "verdict": "anomalous",
        "probability": 0.953,
        "threshold": 0.5,
        "decided_by": "detector",
        "category": "network_timeout",
        "evidence": evidence,
        "similar": [PAST],
        "incident_id": IID,
        "n_lines": 14,
        "model_version": "lt-1",
    }
    return Answer.model_validate(values | changes)


def test_an_answer_shows_verdict_confidence_evidence_similar_incidents_and_feedback() -> None:
    blocks = answer_blocks(answer("db timeout"), pending=True, links=lambda i: f"https://lt.test/i/{i}")
    assert [b["type"] for b in blocks] == [
        "section",
        "context",
        "section",
        "section",
        "context",
        "actions",
        "context",
    ]
    assert text_of(blocks).splitlines()[:6] == [
        ":rotating_light: *ANOMALOUS*  confidence p=0.95 (threshold 0.50)  ·  *network_timeout*",
        "decided by the detector  ·  14 lines  ·  lt-1",
        "*Lines that drove it*",
        "```[L13] db timeout```",
        "*Seen before*",
        "• <https://lt.test/i/8e7fd11f-e11e-510b-abb9-c722e76ad2d2|`8e7fd11f`>  0.98  confirmed anomalous, "
        "network_timeout  2026-11-22  (+2 identical)",
    ]
    assert "resolved: db failover &lt;@U123&gt; &amp; restart" in text_of(blocks)


def test_log_text_cannot_mention_link_or_close_the_code_block() -> None:
    hostile = "ERROR <!channel> <https://evil.example|click> ``` *bold* " + "x" * 500
    shown = text_of(answer_blocks(answer(hostile)))
    line = next(row for row in shown.splitlines() if row.startswith("```[L13]"))
    assert "<!channel>" not in shown and "<https://evil" not in shown
    assert line.count("```") == 2 and "'''" in line and len(line) <= MAX_LINE + 6


def test_the_explanation_replaces_the_pending_line() -> None:
    blocks = answer_blocks(answer("db timeout"), explanation="The db <never> answers [L13].")
    shown = text_of(blocks)
    assert "explanation on its way" not in shown and "The db &lt;never&gt; answers [L13]." in shown


def test_a_resolved_alert_notice_keeps_its_verdict_and_drops_the_buttons() -> None:
    notice = IncidentNotice(
        incident_id=IID,
        group_key="g1",
        status="resolved",
        alert_names=["CheckoutRetryStorm"],
        verdict="anomalous",
        probability=0.95,
        category="network_timeout",
        triage_status="ok",
        link="http://prometheus.test/graph",
    )
    blocks = notice_blocks(notice)
    assert [b["type"] for b in blocks] == ["section", "section", "context"]
    assert text_of(blocks).splitlines() == [
        ":large_green_circle: *RESOLVED*  CheckoutRetryStorm",
        "*ANOMALOUS* p=0.95  ·  *network_timeout*  ·  triage: ok",
        f"incident `{IID}`  ·  group `g1`  ·  <http://prometheus.test/graph|source>",
    ]
