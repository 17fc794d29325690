"""What the knowledge base stores and returns. Every surface shows these fields.

An incident is one log sequence we have seen, with what the detector said about it and what
engineers said about the detector. Its payload in Qdrant is `Incident.model_dump(mode="json")`
plus a few derived keys that filters use (see `store.payload_of`).
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Literal

from pydantic import BaseModel, Field

from detectors.results import Verdict

Source = Literal["cli", "slack", "webhook", "mcp", "import", "api"]
SOURCES: tuple[str, ...] = ("cli", "slack", "webhook", "mcp", "import", "api")

# Ids are UUIDv5 in our own namespace, so the same input maps to the same id in every process.
_ID_NAMESPACE = uuid.UUID("6c6f6774-7269-6167-652d-696e63696465")

# Incidents keep at most this many lines (the first ones); long sequences are still searchable
# because the vector is computed from the full input before the cap.
MAX_STORED_LINES = 200


class IncidentNotFoundError(LookupError):
    """No incident has this id."""


class NoVerdictToJudgeError(ValueError):
    """Feedback judges a verdict, and this incident (imported with a label) has none."""


def utc_now() -> datetime:
    return datetime.now(UTC)


def template_hash(templates: Sequence[str]) -> str:
    """A short digest of the normalised template sequence: equal patterns, equal hash."""
    joined = "\n".join(" ".join(t.split()) for t in templates)
    return hashlib.sha256(joined.encode()).hexdigest()[:16]


def incident_id(templates: Sequence[str], source_id: str = "") -> str:
    """Deterministic id: importing or reporting the same thing twice updates one incident."""
    return str(uuid.uuid5(_ID_NAMESPACE, f"{template_hash(templates)}\x00{source_id}"))


class FeedbackVote(BaseModel):
    """One engineer's current opinion of one incident (their latest, unless retracted)."""

    user: str
    label: int = Field(description="what the engineer says the sequence is: 1 anomalous, 0 normal")
    verdict_correct: bool = Field(description="whether the verdict they were shown was right")
    category: str | None = None
    note: str = ""
    source: Source
    at: datetime
    seq: int = Field(description="audit-log sequence number of the event that set this vote")


class Incident(BaseModel):
    id: str
    lines: list[str] = Field(description=f"the first {MAX_STORED_LINES} lines")
    templates: list[str]
    n_lines: int = Field(description="lines in the original input (may exceed the stored lines)")
    template_hash: str
    verdict: Verdict | None = Field(default=None, description="what the detector said when it was stored")
    probability: float | None = None
    label: int | None = Field(
        default=None, description="confirmed label: from feedback, else from labelled import; None if unknown"
    )
    label_origin: Literal["feedback", "import"] | None = None
    category: str | None = None
    # What the import said, so retracting every vote restores it.
    imported_label: int | None = None
    imported_category: str | None = None
    source: Source
    source_id: str = ""
    alert_labels: dict[str, str] = Field(default_factory=dict)
    fingerprint: str | None = None
    resolution: str | None = None
    link: str | None = None
    created_at: datetime
    updated_at: datetime
    feedback: list[FeedbackVote] = Field(default_factory=list)
    feedback_seq: int = Field(default=0, description="the last audit-log event applied to this incident")
    vector_space: str = Field(description="the embedder identity that produced the stored vector")


class NewIncident(BaseModel):
    """What a caller supplies to store an incident; the store derives the rest."""

    lines: list[str]
    label: int | None = None
    category: str | None = None
    verdict: Verdict | None = None
    probability: float | None = None
    source: Source = "import"
    source_id: str = ""
    alert_labels: dict[str, str] = Field(default_factory=dict)
    fingerprint: str | None = None
    resolution: str | None = None
    link: str | None = None


class SimilarIncident(BaseModel):
    """A search hit. Near-identical hits (same template sequence) are collapsed into one."""

    id: str
    similarity: float = Field(description="cosine similarity of the sequence vectors, 1.0 = same")
    label: int | None
    category: str | None
    verdict: Verdict | None
    resolution: str | None
    link: str | None
    created_at: datetime
    source: Source
    preview: list[str] = Field(description="the first few stored lines")
    duplicates: int = Field(default=0, description="further hits with the same template sequence")
    labelled_anomalous: int = Field(default=0, description="confirmed anomalous among this group")
    labelled_normal: int = Field(default=0, description="confirmed normal among this group")


class IncidentFilter(BaseModel):
    """Restricts a search. Every set field must match (AND)."""

    category: str | None = None
    source: Source | None = None
    label: int | None = Field(default=None, description="confirmed label 0 or 1")
    confirmed_only: bool = Field(default=False, description="only incidents with a confirmed label")
    fingerprint: str | None = None
    alert_labels: dict[str, str] = Field(default_factory=dict)
    since: datetime | None = None


class FeedbackReceipt(BaseModel):
    """Returned once the feedback is durable in the audit log and applied to the incident."""

    incident_id: str
    user: str
    changed: bool = Field(description="False when this exact feedback was already recorded")
    retracted: bool = False
    seq: int | None = Field(description="audit-log sequence number; None when nothing changed")
    label: int | None = Field(description="the incident's confirmed label after this feedback")
    category: str | None
    votes: int
