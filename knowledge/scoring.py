"""Retrieval-augmented scoring: detector verdicts with the similar past incidents and the blend."""

from __future__ import annotations

from collections.abc import Sequence

from pydantic import BaseModel

from detectors import Detector, DetectorResult
from knowledge.blend import BlendedScore, BlendPolicy, blend
from knowledge.records import IncidentFilter, SimilarIncident
from knowledge.store import IncidentStore


class MemoryScore(BaseModel):
    """The detector's own result, the most similar past incidents, and the blended verdict."""

    detector: DetectorResult
    similar: list[SimilarIncident]
    blended: BlendedScore


def score_with_memory(
    detector: Detector,
    store: IncidentStore,
    sequences: Sequence[Sequence[str]],
    *,
    k: int = 5,
    filters: IncidentFilter | None = None,
    policy: BlendPolicy | None = None,
    top_k_evidence: int = 5,
) -> list[MemoryScore]:
    """Score each sequence with the detector and with the memory of past incidents."""
    if not sequences:
        return []
    results = detector.score_many(sequences, top_k=top_k_evidence)
    neighbours = store.similar_many(sequences, k, filters)
    return [
        MemoryScore(
            detector=result,
            similar=similar,
            blended=blend(result.probability, result.threshold, similar, policy),
        )
        for result, similar in zip(results, neighbours, strict=True)
    ]
