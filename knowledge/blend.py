"""Retrieval-augmented scoring: the detector's probability blended with a vote of past incidents.

The rule (documented in the README, "When memory overrides the detector"):

1. Voters are the similar incidents with a confirmed label (from feedback or a labelled import)
   and similarity >= `min_similarity`. Near-identical incidents were already collapsed into one
   group, which votes with its share of anomalous labels.
2. Each voter's closeness ramps from 0 at `min_similarity` to 1 at `full_similarity`.
   The vote is the closeness-weighted mean of the voters' anomalous shares.
3. The vote's weight is `max_weight * (1 - prod(1 - closeness))`: one voter at full similarity,
   or several fairly close ones, give it full weight.
4. blended = (1 - weight) * detector + weight * vote, judged against the detector's threshold.

So retrieval overrides the detector outright when a confirmed incident is at least
`full_similarity` similar (weight 1, with the default `max_weight` of 1); below that it shifts the
probability in proportion; with no confirmed incident within `min_similarity`, the detector alone
decides. An engineer's correction therefore flips the verdict on anything nearly identical to
what they corrected, at once, and leaves everything far from it alone.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

from pydantic import BaseModel, Field

from detectors.results import Verdict
from knowledge.records import SimilarIncident


@dataclass(frozen=True)
class BlendPolicy:
    min_similarity: float = 0.95
    full_similarity: float = 0.975
    max_weight: float = 1.0
    # Voters further from the query than the closest one are discounted by exp(-gap / sharpness):
    # the nearest confirmed incident speaks loudest, as in distance-weighted kNN.
    sharpness: float = 0.005

    def __post_init__(self) -> None:
        if not -1.0 <= self.min_similarity < self.full_similarity <= 1.0:
            raise ValueError("need -1 <= min_similarity < full_similarity <= 1")
        if not 0.0 <= self.max_weight <= 1.0:
            raise ValueError("max_weight must be in [0, 1]")


class RetrievalVote(BaseModel):
    probability: float | None = Field(description="closeness-weighted share of anomalous voters")
    weight: float = Field(description="how much the vote counted in the blend, 0 to 1")
    voters: int = Field(description="confirmed similar incidents that voted")
    top_similarity: float | None = Field(description="similarity of the closest voter")


class BlendedScore(BaseModel):
    detector_probability: float
    retrieval: RetrievalVote
    probability: float = Field(description="the blended probability the verdict is judged on")
    threshold: float
    verdict: Verdict
    decided_by: Literal["detector", "blend", "memory"] = Field(
        description="detector: no vote; memory: the vote had full weight; blend: both counted"
    )


def retrieval_vote(neighbours: list[SimilarIncident], policy: BlendPolicy) -> RetrievalVote:
    span = policy.full_similarity - policy.min_similarity
    weighted_sum = closeness_sum = 0.0
    miss_all = 1.0
    voters = 0
    top: float | None = None
    voting = [
        g
        for g in neighbours
        if g.labelled_anomalous + g.labelled_normal > 0 and g.similarity >= policy.min_similarity
    ]
    if voting:
        top = max(g.similarity for g in voting)
    for group in voting:
        closeness = min(1.0, (group.similarity - policy.min_similarity) / span)
        weight = closeness * math.exp(-(top - group.similarity) / policy.sharpness)  # type: ignore[operator]
        share = group.labelled_anomalous / (group.labelled_anomalous + group.labelled_normal)
        voters += 1
        weighted_sum += weight * share
        closeness_sum += weight
        miss_all *= 1.0 - closeness
    if voters == 0:
        return RetrievalVote(probability=None, weight=0.0, voters=0, top_similarity=None)
    # Voters exactly at min_similarity have closeness 0: they are counted but carry no weight.
    probability = weighted_sum / closeness_sum if closeness_sum > 0 else None
    weight = policy.max_weight * (1.0 - miss_all) if probability is not None else 0.0
    return RetrievalVote(probability=probability, weight=weight, voters=voters, top_similarity=top)


def blend(
    detector_probability: float,
    threshold: float,
    neighbours: list[SimilarIncident],
    policy: BlendPolicy | None = None,
) -> BlendedScore:
    vote = retrieval_vote(neighbours, policy or BlendPolicy())
    if vote.probability is None or vote.weight == 0.0:
        probability, decided_by = detector_probability, "detector"
    else:
        probability = (1.0 - vote.weight) * detector_probability + vote.weight * vote.probability
        decided_by = "memory" if vote.weight >= 0.999 else "blend"
    return BlendedScore(
        detector_probability=detector_probability,
        retrieval=vote,
        probability=probability,
        threshold=threshold,
        verdict="anomalous" if probability >= threshold else "normal",
        decided_by=decided_by,  # type: ignore[arg-type]
    )
