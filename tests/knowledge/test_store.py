"""The incident store on every real engine: import, search, filters, feedback, recovery."""

from __future__ import annotations

import threading

import pytest

from detectors import Detector
from detectors.sequences import LabelledSequence
from detectors.synthetic import generate
from knowledge.feedback_log import FeedbackLog
from knowledge.open import StoreLocation, open_store
from knowledge.projection import label_from_feedback
from knowledge.records import FeedbackVote, IncidentFilter, IncidentNotFoundError, NewIncident, utc_now
from knowledge.scoring import score_with_memory
from knowledge.store import IncidentStore

SAMPLE = list(generate(60, seed=5))


def sequences_of(category: str, n: int, seed: int) -> list[LabelledSequence]:
    return [s for s in generate(n * 8, seed=seed) if s.category == category][:n]


def test_importing_the_same_sequences_twice_adds_no_duplicates(store: IncidentStore) -> None:
    first = store.index(SAMPLE, batch_size=16)
    second = store.index(SAMPLE, batch_size=16)
    assert (first.read, first.new) == (60, store.count())
    assert second.new == 0
    assert store.count() == first.new


def test_a_stored_sequence_is_its_own_nearest_incident_with_its_label(store: IncidentStore) -> None:
    store.index(SAMPLE)
    target = SAMPLE[7]
    (best, *_) = store.similar(target.lines, k=3)
    assert best.similarity == pytest.approx(1.0, abs=1e-4)
    assert best.label == target.label
    assert best.category == target.effective_category
    assert best.preview == list(target.lines[:5])


def test_near_identical_incidents_collapse_into_one_hit_that_counts_them(store: IncidentStore) -> None:
    lines = list(SAMPLE[0].lines)
    copies = [LabelledSequence(tuple(lines), 1, "network_timeout", source_id=f"copy{i}") for i in range(4)]
    store.index(copies + SAMPLE[1:20])
    hits = store.similar(lines, k=5)
    assert hits[0].duplicates == 3
    assert hits[0].labelled_anomalous == 4
    assert len({h.id for h in hits}) == len(hits) == 5


def test_filters_restrict_search_to_matching_incidents(store: IncidentStore) -> None:
    store.index(SAMPLE)
    anomalous_only = store.similar(SAMPLE[0].lines, k=10, filters=IncidentFilter(label=1))
    assert anomalous_only and all(h.label == 1 for h in anomalous_only)
    category = next(s.category for s in SAMPLE if s.label == 1)
    assert all(
        h.category == category for h in store.similar(SAMPLE[0].lines, 5, IncidentFilter(category=category))
    )
    assert store.similar(SAMPLE[0].lines, 5, IncidentFilter(source="slack")) == []
    assert store.count(IncidentFilter(confirmed_only=True)) == len(SAMPLE)


def test_alert_labels_and_fingerprints_are_filterable(store: IncidentStore) -> None:
    item = NewIncident(
        lines=list(SAMPLE[0].lines), source="webhook", alert_labels={"service": "payments"}, fingerprint="fp1"
    )
    (iid,) = store.add([item])
    store.add([NewIncident(lines=list(SAMPLE[1].lines), source="webhook", alert_labels={"service": "auth"})])
    hits = store.similar(SAMPLE[0].lines, 5, IncidentFilter(alert_labels={"service": "payments"}))
    assert [h.id for h in hits] == [iid]
    assert store.count(IncidentFilter(fingerprint="fp1")) == 1


def test_feedback_on_new_lines_creates_an_incident_with_the_confirmed_label(store: IncidentStore) -> None:
    lines = list(SAMPLE[3].lines)
    receipt = store.record_feedback(user="ana", correct=False, source="slack", lines=lines, verdict="normal")
    assert receipt.changed and receipt.label == 1 and receipt.votes == 1
    incident = store.get(receipt.incident_id)
    assert incident is not None and incident.label_origin == "feedback"
    assert incident.feedback[0].user == "ana"


def test_feedback_is_idempotent_per_user_and_reversible(store: IncidentStore) -> None:
    (iid,) = store.add(
        [NewIncident(lines=list(SAMPLE[2].lines), label=0, category="normal", verdict="normal")]
    )
    first = store.record_feedback(user="ana", correct=False, source="slack", incident_id=iid)
    again = store.record_feedback(user="ana", correct=False, source="slack", incident_id=iid)
    assert first.changed and not again.changed and again.votes == 1
    assert store.get(iid).label == 1  # type: ignore[union-attr]
    undone = store.retract_feedback(iid, "ana", "slack")
    assert undone.retracted and undone.label == 0
    restored = store.get(iid)
    assert restored is not None and restored.feedback == [] and restored.label_origin == "import"


def test_feedback_needs_a_known_incident_and_a_judged_verdict(store: IncidentStore) -> None:
    with pytest.raises(IncidentNotFoundError):
        store.record_feedback(user="ana", correct=True, source="cli", incident_id="no-such-id")
    (iid,) = store.add([NewIncident(lines=list(SAMPLE[0].lines))])
    with pytest.raises(ValueError, match="verdict"):
        store.record_feedback(user="ana", correct=True, source="cli", incident_id=iid)


def test_a_correction_changes_the_next_verdict_on_similar_logs_without_retraining(
    store: IncidentStore, shipped_detector: Detector
) -> None:
    normal = next(s for s in SAMPLE if s.label == 0)
    (before,) = score_with_memory(shipped_detector, store, [normal.lines])
    assert before.blended.verdict == "normal"
    store.record_feedback(
        user="ana", correct=False, source="slack", lines=list(normal.lines), verdict=before.detector.verdict
    )
    (after,) = score_with_memory(shipped_detector, store, [normal.lines])
    assert after.detector.probability == pytest.approx(before.detector.probability)
    assert after.blended.verdict == "anomalous"
    assert after.blended.decided_by == "memory"


def test_concurrent_feedback_from_many_threads_loses_and_duplicates_nothing(store: IncidentStore) -> None:
    ids = store.add([NewIncident(lines=list(s.lines), verdict="normal") for s in SAMPLE[:6]])
    errors: list[BaseException] = []

    def send(user: str) -> None:
        try:
            for iid in ids:
                for _ in range(2):  # a redelivered event must not count twice
                    store.record_feedback(user=user, correct=False, source="slack", incident_id=iid)
        except BaseException as err:  # surfaced below; a thread's exception would vanish otherwise
            errors.append(err)

    threads = [threading.Thread(target=send, args=(f"user{i}",)) for i in range(5)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    for iid in ids:
        incident = store.get(iid)
        assert incident is not None
        assert sorted(v.user for v in incident.feedback) == [f"user{i}" for i in range(5)]
    assert len(list(store.feedback_log.events())) == 5 * len(ids)


def test_feedback_survives_reopening_the_store(location: StoreLocation, shipped_detector: Detector) -> None:
    if location.qdrant_url:
        pytest.skip("the server keeps its own data; reopening is the embedded engines' concern")
    from knowledge.embedding import TemplateMeanEmbedder

    store = open_store(location, TemplateMeanEmbedder(shipped_detector.cache))
    receipt = store.record_feedback(
        user="ana", correct=True, source="cli", lines=list(SAMPLE[1].lines), verdict="anomalous"
    )
    store.close()
    reopened = open_store(location, TemplateMeanEmbedder(shipped_detector.cache))
    try:
        incident = reopened.get(receipt.incident_id)
        assert incident is not None and incident.label == 1 and len(incident.feedback) == 1
    finally:
        reopened.close()


def test_opening_the_store_reapplies_feedback_a_crash_left_only_in_the_audit_log(
    location: StoreLocation, shipped_detector: Detector
) -> None:
    if location.qdrant_url:
        pytest.skip("embedded engines only")
    from knowledge.embedding import TemplateMeanEmbedder

    store = open_store(location, TemplateMeanEmbedder(shipped_detector.cache))
    (iid,) = store.add([NewIncident(lines=list(SAMPLE[4].lines), verdict="normal")])
    store.close()
    # The crash window: the audit log committed, the payload update never happened.
    log = FeedbackLog(location.feedback_log_path)
    vote = FeedbackVote(
        user="bo",
        label=label_from_feedback("normal", correct=False),
        verdict_correct=False,
        source="slack",
        at=utc_now(),
        seq=0,
    )
    log.set_vote(vote, iid, list(SAMPLE[4].lines))
    log.close()
    reopened = open_store(location, TemplateMeanEmbedder(shipped_detector.cache))
    try:
        assert reopened.reconciled == 1
        incident = reopened.get(iid)
        assert incident is not None and incident.label == 1 and [v.user for v in incident.feedback] == ["bo"]
    finally:
        reopened.close()


def test_annotate_sets_the_resolution_and_keeps_the_feedback(store: IncidentStore) -> None:
    (iid,) = store.add(
        [NewIncident(lines=["a 1", "b 2"], verdict="anomalous", probability=0.9, source="webhook")]
    )
    store.record_feedback(user="ana", correct=True, source="cli", incident_id=iid)
    updated = store.annotate(iid, resolution="resolved at 10:02", link="https://runbook/db")
    again = store.get(iid)
    assert (
        again is not None and again.resolution == "resolved at 10:02" and again.link == "https://runbook/db"
    )
    assert again.label == 1 and len(again.feedback) == 1 and updated.updated_at >= again.created_at
