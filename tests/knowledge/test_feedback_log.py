from __future__ import annotations

import threading
from datetime import UTC, datetime
from pathlib import Path

from knowledge.feedback_log import FeedbackLog
from knowledge.projection import apply_votes, label_from_feedback
from knowledge.records import FeedbackVote, Incident

AT = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)


def vote(user: str, label: int, category: str | None = None, note: str = "") -> FeedbackVote:
    return FeedbackVote(
        user=user,
        label=label,
        verdict_correct=True,
        category=category,
        note=note,
        source="slack",
        at=AT,
        seq=0,
    )


def incident(**update: object) -> Incident:
    base = Incident(
        id="i1",
        lines=["a"],
        templates=["a"],
        n_lines=1,
        template_hash="h",
        source="import",
        created_at=AT,
        updated_at=AT,
        vector_space="test",
    )
    return base.model_copy(update=update)


def test_the_same_vote_twice_records_one_event(tmp_path: Path) -> None:
    log = FeedbackLog(tmp_path / "f.sqlite")
    first = log.set_vote(vote("ana", 1), "i1", ["x"])
    second = log.set_vote(vote("ana", 1), "i1", ["x"])
    assert first.changed and not second.changed
    assert len(list(log.events())) == 1
    assert [v.user for v in second.votes] == ["ana"]


def test_a_changed_mind_replaces_the_users_vote_and_keeps_both_events(tmp_path: Path) -> None:
    log = FeedbackLog(tmp_path / "f.sqlite")
    log.set_vote(vote("ana", 1), "i1", [])
    change = log.set_vote(vote("ana", 0), "i1", [])
    assert [v.label for v in change.votes] == [0]
    assert [e.label for e in log.events()] == [1, 0]


def test_retracting_removes_the_vote_and_is_logged(tmp_path: Path) -> None:
    log = FeedbackLog(tmp_path / "f.sqlite")
    log.set_vote(vote("ana", 1), "i1", [])
    change = log.retract("i1", "ana", "slack", AT)
    assert change.changed and change.votes == []
    assert [e.action for e in log.events()] == ["set", "retract"]
    assert not log.retract("i1", "ana", "slack", AT).changed


def test_the_log_survives_reopening(tmp_path: Path) -> None:
    FeedbackLog(tmp_path / "f.sqlite").set_vote(vote("ana", 1), "i1", ["line"])
    reopened = FeedbackLog(tmp_path / "f.sqlite")
    assert [v.user for v in reopened.votes("i1")] == ["ana"]
    assert reopened.first_lines("i1") == ["line"]
    assert reopened.last_seq_by_incident() == {"i1": 1}


def test_concurrent_votes_from_many_threads_lose_nothing_and_duplicate_nothing(tmp_path: Path) -> None:
    log = FeedbackLog(tmp_path / "f.sqlite")
    users = [f"user{i}" for i in range(8)]

    def send(user: str) -> None:
        for n in range(10):
            log.set_vote(vote(user, 1), f"incident{n}", [])
            log.set_vote(vote(user, 1), f"incident{n}", [])  # a retried delivery

    threads = [threading.Thread(target=send, args=(u,)) for u in users]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(list(log.events())) == 80
    assert all(len(log.votes(f"incident{n}")) == 8 for n in range(10))


def test_calling_an_anomalous_verdict_wrong_asserts_normal() -> None:
    assert label_from_feedback("anomalous", correct=False) == 0
    assert label_from_feedback("normal", correct=False) == 1
    assert label_from_feedback("normal", correct=True) == 0


def test_the_majority_of_votes_sets_the_label_and_a_tie_goes_to_the_latest() -> None:
    assert apply_votes(incident(), [vote("a", 1), vote("b", 1), vote("c", 0)], 3, AT).label == 1
    assert apply_votes(incident(), [vote("a", 1), vote("b", 0)], 2, AT).label == 0


def test_the_category_comes_from_the_newest_agreeing_vote() -> None:
    votes = [vote("a", 1, "network_timeout"), vote("b", 1, "resource_exhaustion"), vote("c", 0, "x")]
    assert apply_votes(incident(), votes, 3, AT).category == "resource_exhaustion"
    assert apply_votes(incident(), [vote("a", 0)], 1, AT).category == "normal"
    assert apply_votes(incident(category="disk_full"), [vote("a", 1)], 1, AT).category == "disk_full"


def test_retracting_every_vote_restores_the_imported_label() -> None:
    imported = incident(label=0, imported_label=0, imported_category="normal", label_origin="import")
    flipped = apply_votes(imported, [vote("a", 1, "network_timeout")], 1, AT)
    assert (flipped.label, flipped.label_origin) == (1, "feedback")
    restored = apply_votes(flipped, [], 2, AT)
    assert (restored.label, restored.category, restored.label_origin) == (0, "normal", "import")
