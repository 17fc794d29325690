"""The structured explanation: reading the report line, and never letting it contradict a verdict."""

from __future__ import annotations

import re
from datetime import UTC, datetime

from assistant.answer_format import ProseStream, readable_explanation, split_report, true_incident_labels
from knowledge.records import SimilarIncident
from tools.answer import Answer

REPORT = '{"status": "anomalous", "category": "network_timeout", "key_indicators": ["L4"], "next_steps": ["Check the path"]}'


def anomalous(category: str = "network_timeout") -> Answer:
    return Answer(tool="triage", status="ok", verdict="anomalous", probability=0.9, category=category)


def test_the_report_line_and_the_prose_are_split() -> None:
    report, prose = split_report(f"{REPORT}\n[L4] times out.")
    assert report is not None and report.key_indicators == ["L4"]
    assert prose == "[L4] times out."


def test_text_without_a_report_is_all_prose_and_a_broken_report_line_is_dropped() -> None:
    assert split_report("[L4] times out.") == (None, "[L4] times out.")
    assert split_report('{"status": "anomalous"}\n[L4] times out.') == (None, "[L4] times out.")


def test_a_person_sees_the_prose_and_the_next_step_from_an_agreeing_report() -> None:
    text = readable_explanation(f"{REPORT}\n[L4] times out.", anomalous())
    assert text == "[L4] times out.\nNext step: Check the path"


def test_a_report_that_contradicts_the_verdict_is_not_shown() -> None:
    text = readable_explanation(f"{REPORT}\n[L4] times out.", anomalous(category="data_corruption"))
    assert text == "[L4] times out."
    normal = Answer(tool="triage", status="ok", verdict="normal", probability=0.1, category="normal")
    assert readable_explanation(f"{REPORT}\nfine", normal) == "fine"


def test_the_explainer_streams_the_prose_and_next_step_but_never_the_json_line() -> None:
    from langchain_core.messages import AIMessage

    from assistant.explainer import LLMExplainer
    from tests.assistant.scripted import ScriptedChatModel

    model = ScriptedChatModel(script=[AIMessage(f"{REPORT}\n[L4] times out. [L4] times out.")])
    shown: list[str] = []

    final = LLMExplainer(model).explain(anomalous(), ["a"], on_token=shown.append)

    assert final == "[L4] times out.\nNext step: Check the path"
    assert "".join(shown).strip().startswith("[L4]")
    assert "{" not in "".join(shown)


def _hit(incident_id: str, label: int | None, category: str | None) -> SimilarIncident:
    return SimilarIncident(
        id=incident_id,
        similarity=0.95,
        label=label,
        category=category,
        verdict="anomalous",
        resolution=None,
        link=None,
        created_at=datetime(2026, 11, 1, tzinfo=UTC),
        source="import",
        preview=[],
    )


def test_a_label_claimed_for_a_similar_incident_is_set_to_that_incidents_own_label() -> None:
    # The shape `make run` showed: the top match's id with the next match's label.
    answer = anomalous().model_copy(
        update={
            "similar": [
                _hit("9fc3b3e8-1111-5222-8333-444455556666", None, None),
                _hit("7539ed74-cd0b-5260-ae80-bb1e125472f9", 1, "network_timeout"),
            ]
        }
    )
    text = readable_explanation(
        f"{REPORT}\n[L4] times out. It resembles past incident 9fc3b3e8 (confirmed network_timeout).", answer
    )
    assert text.startswith("[L4] times out. It resembles past incident 9fc3b3e8 (unconfirmed).")
    right = "Like 7539ed74-cd0b-5260-ae80-bb1e125472f9 (confirmed network_timeout)."
    assert readable_explanation(right, answer) == right
    invented = readable_explanation("Like 0123abcd (confirmed normal).", answer)
    assert invented == "Like 0123abcd (not a similar incident)."


def test_a_streamed_explanation_shows_the_corrected_label_and_never_the_wrong_one() -> None:
    answer = anomalous().model_copy(
        update={"similar": [_hit("8e7fd11f-e11e-510b-abb9-c722e76ad2d2", 0, "normal")]}
    )
    written = f"{REPORT}\n[L13] times out. It resembles past incident 8e7fd11f (confirmed network_timeout). Check it."
    shown: list[str] = []
    stream = ProseStream(shown.append, fix=lambda prose: true_incident_labels(prose, answer))
    for token in re.findall(r"\S+|\s+", written):  # word by word, as a model streams
        stream.feed(token)
    final = readable_explanation(written, answer)
    stream.finish(final)

    assert "".join(shown) == final
    assert "8e7fd11f (confirmed normal)" in final and "network_timeout" not in "".join(shown)
