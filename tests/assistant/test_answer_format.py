"""The structured explanation: reading the report line, and never letting it contradict a verdict."""

from __future__ import annotations

from assistant.answer_format import readable_explanation, split_report
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
