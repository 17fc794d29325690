from __future__ import annotations

import math
from datetime import UTC, datetime

import pytest

from knowledge.blend import BlendPolicy, blend, retrieval_vote
from knowledge.records import SimilarIncident

POLICY = BlendPolicy(min_similarity=0.9, full_similarity=0.98)


def group(similarity: float, anomalous: int = 0, normal: int = 0) -> SimilarIncident:
    label = None if anomalous + normal == 0 else int(anomalous >= normal)
    return SimilarIncident(
        id=f"id-{similarity}-{anomalous}-{normal}",
        similarity=similarity,
        label=label,
        category=None,
        verdict=None,
        resolution=None,
        link=None,
        created_at=datetime(2026, 1, 1, tzinfo=UTC),
        source="import",
        preview=[],
        labelled_anomalous=anomalous,
        labelled_normal=normal,
    )


def test_with_no_similar_incidents_the_detector_decides_alone() -> None:
    result = blend(0.3, 0.5, [], POLICY)
    assert result.decided_by == "detector"
    assert result.probability == 0.3
    assert result.verdict == "normal"


def test_unconfirmed_and_distant_incidents_do_not_vote() -> None:
    result = blend(0.3, 0.5, [group(0.999), group(0.85, anomalous=3)], POLICY)
    assert result.retrieval.voters == 0
    assert result.decided_by == "detector"


def test_a_confirmed_near_identical_anomaly_overrides_a_normal_detector_verdict() -> None:
    result = blend(0.05, 0.5, [group(0.99, anomalous=1)], POLICY)
    assert result.decided_by == "memory"
    assert result.probability == pytest.approx(1.0)
    assert result.verdict == "anomalous"


def test_a_confirmed_near_identical_false_positive_overrides_an_anomalous_verdict() -> None:
    result = blend(0.97, 0.5, [group(0.995, normal=2)], POLICY)
    assert result.verdict == "normal"
    assert result.probability == pytest.approx(0.0)


def test_a_moderately_similar_incident_shifts_the_probability_in_proportion() -> None:
    result = blend(0.2, 0.5, [group(0.94, anomalous=1)], POLICY)
    assert result.decided_by == "blend"
    assert result.retrieval.weight == pytest.approx(0.5)
    assert result.probability == pytest.approx(0.6)


def test_mixed_labels_in_a_group_vote_with_their_share() -> None:
    vote = retrieval_vote([group(0.99, anomalous=1, normal=3)], POLICY)
    assert vote.probability == pytest.approx(0.25)


def test_the_nearest_voter_outweighs_several_slightly_farther_ones() -> None:
    near_correction = group(0.975, anomalous=1)
    farther_normals = [group(0.962, normal=1) for _ in range(4)]
    vote = retrieval_vote([near_correction, *farther_normals], POLICY)
    discount = math.exp(-(0.975 - 0.962) / POLICY.sharpness)
    expected = (0.9375 * 1.0) / (0.9375 + 4 * 0.775 * discount)
    assert vote.probability == pytest.approx(expected)
    assert vote.probability > 0.5
    assert vote.top_similarity == pytest.approx(0.975)


def test_an_inconsistent_policy_is_refused() -> None:
    with pytest.raises(ValueError, match="min_similarity"):
        BlendPolicy(min_similarity=0.99, full_similarity=0.9)
