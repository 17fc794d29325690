"""The tool functions on the real detector and a real embedded Qdrant store."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable

import pytest
from pydantic import ValidationError

from knowledge.records import NewIncident
from knowledge.store import IncidentStore
from tools import REGISTRY, TOOLS, Answer, Caller, ExplanationFailed, ToolContext, ToolInputError
from tools.grounding import is_unsure


def call(ctx: ToolContext, name: str, caller: Caller | None = None, **arguments: object) -> Answer:
    return REGISTRY[name].call(ctx, arguments, caller or Caller())


def test_score_logs_gives_verdict_probability_category_and_evidence(
    ctx: ToolContext, retry_storm: list[str]
) -> None:
    answer = call(ctx, "score_logs", lines=retry_storm)
    assert answer.tool == "score_logs" and answer.status == "ok"
    assert answer.verdict == "anomalous" and answer.probability is not None and answer.probability > 0.9
    assert answer.category == "network_timeout"
    assert answer.evidence and all(e.line in retry_storm for e in answer.evidence)
    assert answer.decided_by == "detector" and answer.similar == []


def test_score_logs_accepts_no_unknown_arguments(ctx: ToolContext, retry_storm: list[str]) -> None:
    with pytest.raises(ValidationError, match="extra"):
        call(ctx, "score_logs", lines=retry_storm, verdict="normal")


def test_search_finds_a_stored_incident_by_lines_and_by_id_without_itself(
    ctx: ToolContext, incident_store: IncidentStore, retry_storm: list[str], normal_lines: list[str]
) -> None:
    stored, other = incident_store.add(
        [
            NewIncident(lines=retry_storm, label=1, category="network_timeout"),
            NewIncident(lines=normal_lines, label=0),
        ]
    )
    by_lines = call(ctx, "search_similar_incidents", lines=retry_storm, k=2)
    assert by_lines.similar[0].id == stored and by_lines.similar[0].similarity > 0.99
    by_id = call(ctx, "search_similar_incidents", incident_id=stored, k=5)
    assert [s.id for s in by_id.similar] == [other]


def test_search_needs_exactly_one_of_lines_and_incident_id(ctx: ToolContext) -> None:
    with pytest.raises(ValidationError, match="exactly one"):
        call(ctx, "search_similar_incidents")


def test_get_incident_of_an_unknown_id_says_where_ids_come_from(ctx: ToolContext) -> None:
    with pytest.raises(ToolInputError, match="take ids from triage or search_similar_incidents"):
        call(ctx, "get_incident", incident_id="00000000-0000-0000-0000-000000000000")


def test_feedback_needs_an_authenticated_user(ctx: ToolContext, retry_storm: list[str]) -> None:
    with pytest.raises(ToolInputError, match="authenticated user"):
        call(ctx, "record_feedback", Caller(user="mallory"), lines=retry_storm, correct=False)


def test_feedback_on_an_imported_incident_without_a_verdict_is_an_input_error_naming_it(
    ctx: ToolContext, engineer: Caller, incident_store: IncidentStore, retry_storm: list[str]
) -> None:
    (imported,) = incident_store.add([NewIncident(lines=retry_storm, label=1, category="network_timeout")])
    with pytest.raises(ToolInputError, match=f"incident {imported} was imported with a label"):
        call(ctx, "record_feedback", engineer, incident_id=imported, correct=False)
    stored = incident_store.get(imported)
    assert stored is not None and stored.feedback == [] and stored.label == 1


def test_feedback_on_new_lines_stores_the_incident_and_flips_later_verdicts(
    ctx: ToolContext, engineer: Caller, retry_storm: list[str]
) -> None:
    before = call(ctx, "score_logs", lines=retry_storm)
    receipt = call(
        ctx, "record_feedback", engineer, lines=retry_storm, correct=False, note="planned db failover"
    )
    assert receipt.feedback is not None and receipt.feedback.changed and receipt.feedback.label == 0
    after = call(ctx, "score_logs", lines=retry_storm)
    assert before.verdict == "anomalous" and after.verdict == "normal"
    assert after.decided_by == "memory" and after.category == "normal"
    again = call(
        ctx, "record_feedback", engineer, lines=retry_storm, correct=False, note="planned db failover"
    )
    assert again.feedback is not None and not again.feedback.changed
    shown = call(ctx, "get_incident", incident_id=receipt.incident_id)
    assert shown.incident is not None and shown.incident.feedback[0].user == "ana"


def test_triage_without_an_llm_explains_with_cited_lines_and_incidents(
    ctx: ToolContext, incident_store: IncidentStore, retry_storm: list[str]
) -> None:
    (past,) = incident_store.add([NewIncident(lines=retry_storm[:-2], label=1, category="network_timeout")])
    answer = call(ctx, "triage", lines=retry_storm)
    assert answer.status == "ok" and answer.verdict == "anomalous"
    assert answer.explanation is not None
    assert "[L" in answer.explanation and past in answer.explanation
    assert answer.incident_id is not None and incident_store.get(answer.incident_id) is None  # not remembered


def test_triage_with_remember_stores_the_incident_under_the_answer_id(
    ctx: ToolContext, incident_store: IncidentStore, engineer: Caller, retry_storm: list[str]
) -> None:
    answer = call(ctx, "triage", engineer, lines=retry_storm, remember=True, source_id="alert-7")
    stored = incident_store.get(answer.incident_id or "")
    assert stored is not None and stored.verdict == "anomalous" and stored.source == "cli"
    assert stored.label is None  # a detector verdict is not a confirmed label


class _Explainer:
    def __init__(self, behaviour: Callable[[], str]) -> None:
        self.behaviour = behaviour
        self.tokens: list[str] = []

    def explain(self, answer: Answer, lines: list[str], on_token: Callable[[str], None] | None = None) -> str:
        return self.behaviour()


def _raise_timeout() -> str:
    raise ExplanationFailed("LLMBudgetExceeded: over the 8 s budget")


def test_triage_adds_the_llm_explanation_after_the_grounded_summary(
    shipped_detector, incident_store, retry_storm: list[str]
) -> None:
    ctx = ToolContext(
        shipped_detector, incident_store, explainer=_Explainer(lambda: "Retries to the db at [L2].")
    )
    answer = call(ctx, "triage", lines=retry_storm)
    assert answer.status == "ok"
    assert answer.explanation is not None and answer.explanation.endswith("Retries to the db at [L2].")


def test_an_llm_past_its_budget_degrades_the_answer_but_keeps_verdict_and_similar(
    shipped_detector, incident_store: IncidentStore, retry_storm: list[str]
) -> None:
    incident_store.add([NewIncident(lines=retry_storm, label=1, category="network_timeout")])
    ctx = ToolContext(shipped_detector, incident_store, explainer=_Explainer(_raise_timeout))
    answer = call(ctx, "triage", lines=retry_storm)
    assert answer.status == "degraded" and "budget" in (answer.reason or "")
    assert answer.verdict == "anomalous" and answer.similar
    assert answer.explanation and "[L" in answer.explanation


@pytest.mark.parametrize(
    ("probability", "threshold", "unsure"),
    [(0.5, 0.5, True), (0.3, 0.27, True), (0.9, 0.27, False), (0.01, 0.27, False), (0.2, 0.27, True)],
)
def test_the_detector_is_unsure_near_its_threshold(
    probability: float, threshold: float, unsure: bool
) -> None:
    assert is_unsure(probability, threshold, margin=0.5) is unsure


def test_every_tool_has_a_description_an_input_schema_and_honest_hints() -> None:
    names = {spec.name for spec in TOOLS}
    assert names == {"score_logs", "search_similar_incidents", "record_feedback", "get_incident", "triage"}
    for spec in TOOLS:
        assert len(spec.description) > 60, spec.name
        assert spec.input_model.model_json_schema()["properties"], spec.name
        assert not (spec.read_only and spec.side_effects), spec.name
    assert [s.name for s in TOOLS if s.side_effects] == ["record_feedback"]


def test_the_tools_package_imports_no_surface_framework() -> None:
    code = (
        "import sys, tools; banned = ('langchain', 'langgraph', 'mcp', 'slack_bolt', 'fastapi', 'typer');"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in banned))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
