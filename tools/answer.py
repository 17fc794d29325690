"""The one answer schema every tool returns, so every surface renders one shape.

Each tool fills what it knows: `score_logs` the verdict and evidence, `search_similar_incidents`
the similar incidents, `triage` all of it plus the explanation, `get_incident` and
`record_feedback` the incident and the feedback receipt. Fields a tool does not produce stay
empty (None or []).
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

from detectors.results import ExpertUsage, LineEvidence, Verdict
from knowledge.records import FeedbackReceipt, Incident, SimilarIncident

Status = Literal["ok", "inconclusive", "degraded"]
ToolName = Literal["score_logs", "search_similar_incidents", "record_feedback", "get_incident", "triage"]


class Answer(BaseModel):
    """What logtriage says about some logs or an incident."""

    tool: ToolName = Field(description="the tool that produced this answer")
    status: Status = Field(
        description=(
            "ok: a grounded answer; inconclusive: the detector is unsure and nothing similar is "
            "known; degraded: part of the work failed (see reason), the rest is still valid"
        )
    )
    reason: str | None = Field(default=None, description="why the status is not ok")
    verdict: Verdict | None = Field(default=None, description="the final verdict (memory included)")
    probability: float | None = Field(
        default=None, description="the probability the verdict was judged on (detector blended with memory)"
    )
    detector_probability: float | None = Field(
        default=None, description="the detector's own calibrated probability"
    )
    threshold: float | None = Field(default=None, description="anomalous at or above this probability")
    decided_by: Literal["detector", "blend", "memory"] | None = Field(
        default=None, description="whether past incidents changed the detector's probability"
    )
    category: str | None = Field(default=None, description="the kind of problem, or 'normal'")
    category_probability: float | None = None
    evidence: list[LineEvidence] = Field(
        default_factory=list, description="the lines that drove the verdict, strongest first"
    )
    similar: list[SimilarIncident] = Field(
        default_factory=list, description="the most similar past incidents, best first"
    )
    explanation: str | None = Field(default=None, description="a short explanation citing the evidence")
    incident_id: str | None = Field(
        default=None, description="the incident these logs are (or would be) stored as; use it for feedback"
    )
    incident: Incident | None = Field(default=None, description="the stored incident (get_incident)")
    feedback: FeedbackReceipt | None = Field(default=None, description="what record_feedback stored")
    experts: list[ExpertUsage] = Field(default_factory=list, description="Mixture-of-Experts routing")
    n_lines: int | None = Field(default=None, description="log lines examined")
    model_version: str | None = None

    def headline(self) -> str:
        """One line for a terminal, a Slack preview or a log: verdict, confidence, category."""
        if self.verdict is None:
            return f"{self.tool}: {self.status}"
        head = f"{self.verdict.upper()} p={self.probability:.2f}"
        if self.verdict == "anomalous" and self.category:
            head += f" ({self.category})"
        if self.status != "ok":
            head += f" [{self.status}]"
        return head
