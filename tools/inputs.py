"""The typed arguments of each tool. Field descriptions are what users and LLMs read."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, model_validator

from knowledge.records import Source

_LINES = "the log lines, oldest first, one list entry per line (raw text; timestamps and ids may stay)"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ScoreLogsInput(_Strict):
    lines: list[str] = Field(description=_LINES)
    use_memory: bool = Field(default=True, description="blend in the labels of similar past incidents")


class SearchSimilarInput(_Strict):
    lines: list[str] | None = Field(default=None, description=_LINES + "; give this or incident_id")
    incident_id: str | None = Field(default=None, description="find incidents similar to this stored one")
    k: int = Field(default=5, ge=1, le=50, description="how many similar incidents to return")
    category: str | None = Field(default=None, description="only incidents of this category")
    confirmed_only: bool = Field(default=False, description="only incidents an engineer or import labelled")
    source: Source | None = Field(default=None, description="only incidents that came from this surface")

    @model_validator(mode="after")
    def _one_query(self) -> SearchSimilarInput:
        if (self.lines is None) == (self.incident_id is None):
            raise ValueError("give exactly one of lines and incident_id")
        return self


class RecordFeedbackInput(_Strict):
    incident_id: str | None = Field(
        default=None, description="the incident the feedback is about (from triage or search results)"
    )
    lines: list[str] | None = Field(
        default=None, description=_LINES + "; instead of incident_id, for logs not stored yet"
    )
    correct: bool = Field(description="true if the verdict shown was right, false if it was wrong")
    category: str | None = Field(default=None, description="the right category, when known")
    note: str = Field(default="", max_length=2_000, description="why, in the engineer's words")

    @model_validator(mode="after")
    def _one_target(self) -> RecordFeedbackInput:
        if (self.lines is None) == (self.incident_id is None):
            raise ValueError("give exactly one of incident_id and lines")
        return self


class GetIncidentInput(_Strict):
    incident_id: str = Field(
        min_length=1, description="the incident id (a UUID) from triage or search results"
    )


class TriageInput(_Strict):
    lines: list[str] = Field(description=_LINES)
    remember: bool = Field(
        default=False,
        description="store these logs as an incident so later feedback and searches can refer to it",
    )
    source_id: str = Field(
        default="", max_length=500, description="where the logs came from (an alert group, a message)"
    )
