"""`IncidentStore`: past incidents in Qdrant, similar-incident search, and the feedback writer.

The store owns three injected parts: a `VectorBackend` (embedded Qdrant Edge, or a Qdrant server),
a `SequenceEmbedder` (lines to a unit vector), and the `FeedbackLog` (the durable audit log).
Feedback is written to the log first, then projected onto the incident's payload, then flushed;
only then is it acknowledged. On open, projections the log is ahead of are re-applied.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import numpy as np

from detectors.results import Verdict
from detectors.sequences import LabelledSequence
from detectors.templates import mask_lines
from knowledge.backend import FieldKind, Filters, VectorBackend, VectorPoint
from knowledge.embedding import SequenceEmbedder
from knowledge.feedback_log import FeedbackChange, FeedbackLog
from knowledge.projection import apply_votes, label_from_feedback, merge_existing
from knowledge.records import (
    MAX_STORED_LINES,
    FeedbackReceipt,
    FeedbackVote,
    Incident,
    IncidentFilter,
    IncidentNotFoundError,
    NewIncident,
    NoVerdictToJudgeError,
    SimilarIncident,
    Source,
    incident_id,
    template_hash,
    utc_now,
)
from knowledge.search import backend_filters, collapse_hits

INDEXED_FIELDS: dict[str, FieldKind] = {
    "vector_space": "keyword",
    "template_hash": "keyword",
    "label": "integer",
    "category": "keyword",
    "verdict": "keyword",
    "source": "keyword",
    "fingerprint": "keyword",
    "label_pairs": "keyword",
    "created_ts": "float",
}

# Searches fetch more than asked so that collapsing near-identical hits still leaves `k`.
_OVERFETCH = 4


@dataclass(frozen=True)
class IndexReport:
    read: int
    stored: int
    new: int
    seconds: float

    @property
    def per_second(self) -> float:
        return self.stored / self.seconds if self.seconds > 0 else float("inf")


def payload_of(incident: Incident) -> dict[str, Any]:
    """The Qdrant payload: the incident plus the derived keys that filters use."""
    payload = incident.model_dump(mode="json")
    payload["created_ts"] = incident.created_at.timestamp()
    payload["label_pairs"] = [f"{k}={v}" for k, v in sorted(incident.alert_labels.items())]
    return payload


def incident_of(payload: dict[str, Any]) -> Incident:
    return Incident.model_validate(payload)


class IncidentStore:
    def __init__(
        self,
        backend: VectorBackend,
        embedder: SequenceEmbedder,
        feedback_log: FeedbackLog,
        *,
        clock: Callable[[], datetime] = utc_now,
    ) -> None:
        self.backend = backend
        self.embedder = embedder
        self.feedback_log = feedback_log
        self._clock = clock
        # Serialises feedback projections so payloads are written in audit-log order.
        self._write_lock = threading.Lock()
        backend.ensure_collection(embedder.dim, INDEXED_FIELDS)
        self.reconciled = self.reconcile()

    # -- writing incidents -------------------------------------------------------------------

    def add(self, items: Sequence[NewIncident], vectors: np.ndarray | None = None) -> list[str]:
        """Store incidents (one batch); returns their ids. Re-adding an id keeps its feedback."""
        return self._add(items, vectors)[0]

    def _add(self, items: Sequence[NewIncident], vectors: np.ndarray | None = None) -> tuple[list[str], int]:
        """(ids, how many of them are new)."""
        if not items:
            return [], 0
        for item in items:
            if not any(line.strip() for line in item.lines):
                raise ValueError("an incident needs at least one non-blank log line")
        if vectors is None:
            vectors = self.embedder.embed([item.lines for item in items])
        incidents = [self._new_incident(item) for item in items]
        existing = {hit.id: hit.payload for hit in self.backend.retrieve([i.id for i in incidents])}
        points = []
        for incident, vector in zip(incidents, vectors, strict=True):
            if incident.id in existing:
                incident = merge_existing(incident, incident_of(existing[incident.id]))
            points.append(VectorPoint(incident.id, vector, payload_of(incident)))
        self.backend.upsert(points)
        new_ids = {i.id for i in incidents} - existing.keys()
        return [incident.id for incident in incidents], len(new_ids)

    def index(
        self,
        sequences: Iterable[LabelledSequence],
        *,
        source: Source = "import",
        batch_size: int = 256,
        on_batch: Callable[[int], None] | None = None,
    ) -> IndexReport:
        """Import labelled sequences in batches; the label of each becomes its confirmed label."""
        started = time.perf_counter()
        read = stored = new = 0
        batch: list[NewIncident] = []

        def flush_batch() -> None:
            nonlocal stored, new
            _, batch_new = self._add(batch)
            stored += len(batch)
            new += batch_new
            if on_batch:
                on_batch(len(batch))
            batch.clear()

        for seq in sequences:
            read += 1
            batch.append(
                NewIncident(
                    lines=list(seq.lines),
                    label=seq.label,
                    category=seq.effective_category,
                    source=source,
                    source_id=seq.source_id,
                )
            )
            if len(batch) >= batch_size:
                flush_batch()
        if batch:
            flush_batch()
        self.backend.optimize()
        self.backend.flush()
        return IndexReport(read, stored, new, time.perf_counter() - started)

    # -- reading -------------------------------------------------------------------------------

    def get(self, incident_id: str) -> Incident | None:
        if not _is_uuid(incident_id):  # every id we issue is a UUID; anything else cannot exist
            return None
        hits = self.backend.retrieve([incident_id])
        return incident_of(hits[0].payload) if hits else None

    def count(self, filters: IncidentFilter | None = None) -> int:
        return self.backend.count(self._filters(filters))

    def incidents(self, filters: IncidentFilter | None = None) -> Iterator[Incident]:
        for hit in self.backend.scroll(filters=self._filters(filters)):
            yield incident_of(hit.payload)

    def similar(
        self, lines: Sequence[str], k: int = 5, filters: IncidentFilter | None = None
    ) -> list[SimilarIncident]:
        """The `k` most similar past incidents, near-identical ones collapsed, best first."""
        return self.similar_many([lines], k, filters)[0]

    def similar_many(
        self, sequences: Sequence[Sequence[str]], k: int = 5, filters: IncidentFilter | None = None
    ) -> list[list[SimilarIncident]]:
        if not sequences:
            return []
        return self.similar_to_vectors(self.embedder.embed(sequences), k, filters)

    def similar_to_vectors(
        self, vectors: np.ndarray, k: int = 5, filters: IncidentFilter | None = None
    ) -> list[list[SimilarIncident]]:
        if k < 1:
            raise ValueError(f"k must be at least 1, got {k}")
        hits = self.backend.search_batch(vectors, k * _OVERFETCH, self._filters(filters))
        return [collapse_hits(row, k) for row in hits]

    # -- feedback ------------------------------------------------------------------------------

    def record_feedback(
        self,
        *,
        user: str,
        correct: bool,
        source: Source,
        incident_id: str | None = None,
        lines: Sequence[str] | None = None,
        verdict: Verdict | None = None,
        probability: float | None = None,
        category: str | None = None,
        note: str = "",
        source_id: str = "",
    ) -> FeedbackReceipt:
        """Record that `user` judged a verdict `correct` (or wrong) for an incident or for log lines.

        Give `incident_id`, or `lines` (the incident is created if new, with `verdict`). `verdict`
        is the verdict the user judged; by default the incident's stored one. Idempotent per
        (incident, user): the latest opinion counts, and repeating it changes nothing. Returns once
        the feedback is durable and later searches and verdicts see it.
        """
        if not user.strip():
            raise ValueError("feedback needs the user who gave it")
        with self._write_lock:
            incident = self._incident_for_feedback(
                incident_id, lines, verdict, probability, source, source_id
            )
            judged = verdict or incident.verdict
            if judged is None:
                raise NoVerdictToJudgeError(
                    f"incident {incident.id} has no stored verdict; pass the verdict the user judged"
                )
            label = label_from_feedback(judged, correct)
            vote = FeedbackVote(
                user=user,
                label=label,
                verdict_correct=correct,
                category=category,
                note=note,
                source=source,
                at=self._clock(),
                seq=0,  # assigned by the log
            )
            change = self.feedback_log.set_vote(vote, incident.id, incident.lines)
            return self._project(incident, user, change, retracted=False)

    def retract_feedback(self, incident_id: str, user: str, source: Source) -> FeedbackReceipt:
        """Take back `user`'s feedback on the incident (a reaction was removed)."""
        with self._write_lock:
            incident = self.get(incident_id)
            if incident is None:
                raise IncidentNotFoundError(f"no incident with id {incident_id}")
            change = self.feedback_log.retract(incident_id, user, source, self._clock())
            return self._project(incident, user, change, retracted=True)

    def annotate(
        self, incident_id: str, *, resolution: str | None = None, link: str | None = None
    ) -> Incident:
        """Set what happened to an incident (an alert resolved, a postmortem link); returns it updated."""
        with self._write_lock:
            incident = self.get(incident_id)
            if incident is None:
                raise IncidentNotFoundError(f"no incident with id {incident_id}")
            changes = {k: v for k, v in (("resolution", resolution), ("link", link)) if v is not None}
            updated = incident.model_copy(update={**changes, "updated_at": self._clock()})
            full = payload_of(updated)
            self.backend.set_payload(incident_id, {key: full[key] for key in (*changes, "updated_at")})
            return updated

    def reconcile(self) -> int:
        """Re-apply feedback the audit log holds but the incident payloads miss (after a crash)."""
        behind = 0
        last_seq = self.feedback_log.last_seq_by_incident()
        ids = sorted(last_seq)
        for start in range(0, len(ids), 256):
            chunk = ids[start : start + 256]
            present = {hit.id: incident_of(hit.payload) for hit in self.backend.retrieve(chunk)}
            for iid in chunk:
                incident = present.get(iid) or self._rebuild(iid)
                if incident is None or incident.feedback_seq >= last_seq[iid]:
                    continue
                self._write_projection(incident, self.feedback_log.votes(iid), last_seq[iid])
                behind += 1
        if behind:
            self.backend.flush()
        return behind

    def close(self) -> None:
        self.backend.close()
        self.feedback_log.close()

    # -- internals -----------------------------------------------------------------------------

    def _filters(self, filters: IncidentFilter | None) -> Filters:
        return backend_filters(filters, self.embedder.identity)

    def _new_incident(self, item: NewIncident) -> Incident:
        templates = mask_lines(item.lines)
        now = self._clock()
        return Incident(
            id=incident_id(templates, item.source_id),
            lines=item.lines[:MAX_STORED_LINES],
            templates=templates[:MAX_STORED_LINES],
            n_lines=len(item.lines),
            template_hash=template_hash(templates),
            verdict=item.verdict,
            probability=item.probability,
            label=item.label,
            label_origin="import" if item.label is not None else None,
            imported_label=item.label,
            category=item.category,
            imported_category=item.category,
            source=item.source,
            source_id=item.source_id,
            alert_labels=item.alert_labels,
            fingerprint=item.fingerprint,
            resolution=item.resolution,
            link=item.link,
            created_at=now,
            updated_at=now,
            vector_space=self.embedder.identity,
        )

    def _incident_for_feedback(
        self,
        incident_id: str | None,
        lines: Sequence[str] | None,
        verdict: Verdict | None,
        probability: float | None,
        source: Source,
        source_id: str,
    ) -> Incident:
        if (incident_id is None) == (lines is None):
            raise ValueError("give exactly one of incident_id and lines")
        if incident_id is not None:
            found = self.get(incident_id)
            if found is None:
                raise IncidentNotFoundError(f"no incident with id {incident_id}")
            return found
        assert lines is not None
        new = NewIncident(
            lines=list(lines), verdict=verdict, probability=probability, source=source, source_id=source_id
        )
        (new_id,) = self.add([new])
        stored = self.get(new_id)
        assert stored is not None
        return stored

    def _project(
        self, incident: Incident, user: str, change: FeedbackChange, *, retracted: bool
    ) -> FeedbackReceipt:
        if change.changed:
            assert change.seq is not None
            # No engine flush here: the engine's WAL already survives a killed process, and the audit
            # log (fsync'ed) lets `reconcile` rebuild the payload after a power loss.
            incident = self._write_projection(incident, change.votes, change.seq)
        return FeedbackReceipt(
            incident_id=incident.id,
            user=user,
            changed=change.changed,
            retracted=retracted,
            seq=change.seq,
            label=incident.label,
            category=incident.category,
            votes=len(change.votes),
        )

    def _write_projection(self, incident: Incident, votes: list[FeedbackVote], seq: int) -> Incident:
        updated = apply_votes(incident, votes, seq, self._clock())
        changed_keys = ("label", "label_origin", "category", "feedback", "feedback_seq", "updated_at")
        full = payload_of(updated)
        self.backend.set_payload(updated.id, {key: full[key] for key in changed_keys})
        return updated

    def _rebuild(self, iid: str) -> Incident | None:
        """Recreate an incident that a crash lost between the audit log and the vector store."""
        lines = self.feedback_log.first_lines(iid)
        if not lines:
            return None
        item = NewIncident(lines=lines, source="api")
        vector = self.embedder.embed([lines])
        incident = self._new_incident(item).model_copy(update={"id": iid})
        self.backend.upsert([VectorPoint(iid, vector[0], payload_of(incident))])
        return incident


def _is_uuid(text: str) -> bool:
    try:
        uuid.UUID(text)
    except ValueError:
        return False
    return True
