"""The durable alert queue: real SQLite files in a temporary folder, a fake clock for windows."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from integrations.alert_queue import (
    AlertQueue,
    EnqueueResult,
    Job,
    NewJob,
    QueueBackendError,
    QueueClosedError,
    QueueFullError,
)

T0 = 1_750_000_000.0


class FakeClock:
    def __init__(self, now: float = T0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def path(tmp_path: Path) -> Path:
    return tmp_path / "queue" / "alerts.sqlite"


@pytest.fixture
def queue(path: Path, clock: FakeClock) -> Iterator[AlertQueue]:
    with AlertQueue(path, clock=clock) as q:
        yield q


def at(seconds: float) -> datetime:
    return datetime.fromtimestamp(seconds, tz=UTC)


def alert(queue: AlertQueue, name: str, group: str | None = None, dedupe: str | None = None) -> str:
    return queue.enqueue("alert", {"name": name}, dedupe_key=dedupe, group_key=group).job_id


def test_enqueued_job_is_pending_with_its_payload(queue: AlertQueue) -> None:
    result = queue.enqueue("alert", {"name": "HighErrorRate"}, dedupe_key="fp1:firing", group_key="g1")
    assert result == EnqueueResult(job_id=result.job_id, duplicate=False, queued=1)
    assert len(result.job_id) == 32 and int(result.job_id, 16) >= 0  # uuid4 hex
    assert queue.get(result.job_id) == Job(
        id=result.job_id,
        kind="alert",
        status="pending",
        payload={"name": "HighErrorRate"},
        dedupe_key="fp1:firing",
        group_key="g1",
        attempts=0,
        result=None,
        error=None,
        worker=None,
        enqueued_at=at(T0),
        available_at=at(T0),
        started_at=None,
        finished_at=None,
    )


def test_enqueued_job_survives_close_and_reopen(path: Path, clock: FakeClock) -> None:
    with AlertQueue(path, clock=clock) as queue:
        job_id = alert(queue, "DiskFull")
        before = queue.get(job_id)
    with AlertQueue(path, clock=clock) as reopened:
        assert reopened.get(job_id) == before
        assert reopened.counts() == {"pending": 1, "in_progress": 0, "done": 0, "failed": 0}


def test_job_claimed_by_a_crashed_process_is_pending_again_after_reopen(path: Path, clock: FakeClock) -> None:
    queue = AlertQueue(path, clock=clock)
    job_id = alert(queue, "DiskFull")
    assert queue.claim("w1") is not None
    queue.close()  # the process dies: no complete, no fail

    clock.now += 60
    with AlertQueue(path, clock=clock) as reopened:
        job = reopened.get(job_id)
        assert job is not None
        assert (job.status, job.attempts, job.worker) == ("pending", 1, "w1")
        reclaimed = reopened.claim("w2")
        assert reclaimed is not None
        assert (reclaimed.id, reclaimed.attempts, reclaimed.started_at) == (job_id, 2, at(T0 + 60))


def test_job_that_crashed_the_process_max_attempts_times_is_failed_on_reopen(
    path: Path, clock: FakeClock
) -> None:
    for _ in range(2):
        queue = AlertQueue(path, clock=clock, max_attempts=2)
        if queue.depth() == 0:
            alert(queue, "PoisonPill")
        assert queue.claim("w") is not None
        queue.close()
    with AlertQueue(path, clock=clock, max_attempts=2) as reopened:
        assert reopened.counts() == {"pending": 0, "in_progress": 0, "done": 0, "failed": 1}
        assert reopened.claim("w") is None


def test_claim_takes_the_oldest_job_and_returns_none_when_idle(queue: AlertQueue, clock: FakeClock) -> None:
    first = alert(queue, "a")
    clock.now += 1
    second = alert(queue, "b")
    claimed = [queue.claim("w"), queue.claim("w"), queue.claim("w")]
    assert [job.id if job else None for job in claimed] == [first, second, None]
    assert queue.counts() == {"pending": 0, "in_progress": 2, "done": 0, "failed": 0}
    assert queue.depth() == 2


def test_complete_records_the_result_and_finishes_the_job(queue: AlertQueue, clock: FakeClock) -> None:
    job_id = alert(queue, "a")
    claimed = queue.claim("w")
    assert claimed is not None
    clock.now += 5
    done = queue.complete(job_id, {"incident_id": "inc-1"})
    update = {"status": "done", "result": {"incident_id": "inc-1"}, "finished_at": at(T0 + 5)}
    assert done == claimed.model_copy(update=update)
    assert queue.get(job_id) == done
    assert queue.depth() == 0


def test_repeated_alert_within_the_window_is_a_duplicate_of_the_first(
    queue: AlertQueue, clock: FakeClock
) -> None:
    first = queue.enqueue("alert", {"n": 1}, dedupe_key="fp1:firing", group_key=None)
    clock.now += 299.9
    again = queue.enqueue("alert", {"n": 2}, dedupe_key="fp1:firing", group_key=None)
    assert again == EnqueueResult(job_id=first.job_id, duplicate=True, queued=1)
    assert queue.counts()["pending"] == 1


def test_same_fingerprint_with_another_status_is_not_a_duplicate(queue: AlertQueue) -> None:
    firing = queue.enqueue("alert", {}, dedupe_key="fp1:firing", group_key=None)
    resolved = queue.enqueue("alert", {}, dedupe_key="fp1:resolved", group_key=None)
    assert (resolved.duplicate, resolved.job_id != firing.job_id) == (False, True)


def test_repeated_alert_after_the_window_is_a_new_job(queue: AlertQueue, clock: FakeClock) -> None:
    first = queue.enqueue("alert", {}, dedupe_key="fp1:firing", group_key=None)
    queue.claim("w")
    queue.complete(first.job_id, {})
    clock.now += 300.1
    later = queue.enqueue("alert", {}, dedupe_key="fp1:firing", group_key=None)
    assert later.duplicate is False and later.job_id != first.job_id


def test_full_queue_raises_queue_full_and_adds_nothing(path: Path, clock: FakeClock) -> None:
    with AlertQueue(path, capacity=2, clock=clock) as queue:
        alert(queue, "a", dedupe="a")
        alert(queue, "b")
        with pytest.raises(QueueFullError, match="2 pending jobs reach its capacity of 2") as raised:
            alert(queue, "c")
        assert (raised.value.capacity, raised.value.pending) == (2, 2)
        assert queue.counts()["pending"] == 2
        # A repeat still gets its answer: it adds nothing.
        assert queue.enqueue("alert", {}, dedupe_key="a", group_key=None).duplicate is True
        # Running jobs do not count against the capacity: pending ones do.
        queue.claim("w")
        assert alert(queue, "c")


def test_batch_that_would_overflow_the_queue_adds_none_of_its_jobs(path: Path, clock: FakeClock) -> None:
    with AlertQueue(path, capacity=3, clock=clock) as queue:
        alert(queue, "a")
        with pytest.raises(QueueFullError):
            queue.enqueue_many([NewJob("alert", {"n": n}) for n in range(3)])
        assert queue.counts()["pending"] == 1


def test_batch_enqueue_dedupes_within_the_batch_and_against_earlier_jobs(queue: AlertQueue) -> None:
    earlier = queue.enqueue("alert", {}, dedupe_key="fp0:firing", group_key="g")
    results = queue.enqueue_many(
        [
            NewJob("alert", {"n": 1}, dedupe_key="fp1:firing", group_key="g"),
            NewJob("alert", {"n": 2}, dedupe_key="fp1:firing", group_key="g"),
            NewJob("alert", {"n": 3}, dedupe_key="fp0:firing", group_key="g"),
            NewJob("alert", {"n": 4}, group_key="g"),
        ]
    )
    new1, new4 = results[0].job_id, results[3].job_id
    assert results == [
        EnqueueResult(job_id=new1, duplicate=False, queued=3),
        EnqueueResult(job_id=new1, duplicate=True, queued=3),
        EnqueueResult(job_id=earlier.job_id, duplicate=True, queued=3),
        EnqueueResult(job_id=new4, duplicate=False, queued=3),
    ]
    assert queue.enqueue_many([]) == []


def test_concurrent_enqueues_from_eight_threads_lose_nothing(queue: AlertQueue) -> None:
    per_thread = 50
    start = threading.Barrier(8)
    ids: list[str] = []
    ids_lock = threading.Lock()
    failures: list[BaseException] = []

    def producer(thread: int) -> None:
        try:
            start.wait(timeout=10)
            mine = [
                queue.enqueue("alert", {"thread": thread, "n": n}, dedupe_key=f"{thread}:{n}", group_key=None)
                for n in range(per_thread)
            ]
            with ids_lock:
                ids.extend(result.job_id for result in mine)
        except BaseException as exc:  # surfaced by the assertion below
            failures.append(exc)

    threads = [threading.Thread(target=producer, args=(t,)) for t in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert failures == []
    assert len(ids) == len(set(ids)) == 8 * per_thread
    payloads = []
    while (job := queue.claim("w")) is not None:
        payloads.append((job.payload["thread"], job.payload["n"]))
    assert sorted(payloads) == [(t, n) for t in range(8) for n in range(per_thread)]


def test_later_job_of_a_group_waits_until_the_earlier_one_finishes(queue: AlertQueue) -> None:
    a1 = alert(queue, "a1", group="A")
    a2 = alert(queue, "a2", group="A")
    b1 = alert(queue, "b1", group="B")
    loose = alert(queue, "loose")
    claimed = [queue.claim("w"), queue.claim("w"), queue.claim("w"), queue.claim("w")]
    assert [job.id if job else None for job in claimed] == [a1, b1, loose, None]
    queue.complete(a1, {})
    next_job = queue.claim("w")
    assert next_job is not None and next_job.id == a2


def test_group_waits_behind_a_retry_in_backoff(queue: AlertQueue, clock: FakeClock) -> None:
    firing = alert(queue, "firing", group="A")
    resolved = alert(queue, "resolved", group="A")
    queue.claim("w")
    queue.fail(firing, "receiver down", retry=True, retry_delay_s=30)
    assert queue.claim("w") is None  # the resolution must not overtake its firing alert
    clock.now += 30
    claimed = [queue.claim("w"), queue.claim("w")]
    assert [job.id if job else None for job in claimed] == [firing, None]
    queue.complete(firing, {})
    last = queue.claim("w")
    assert last is not None and last.id == resolved


def test_failed_attempt_with_retry_goes_back_to_pending_until_max_attempts(queue: AlertQueue) -> None:
    job_id = alert(queue, "flaky")
    outcomes = []
    for attempt in range(1, 4):
        claimed = queue.claim("w")
        assert claimed is not None and claimed.attempts == attempt
        job = queue.fail(job_id, f"boom {attempt}", retry=True)
        outcomes.append((job.status, job.attempts, job.error))
    assert outcomes == [("pending", 1, "boom 1"), ("pending", 2, "boom 2"), ("failed", 3, "boom 3")]
    assert queue.claim("w") is None


def test_failure_without_retry_fails_the_job_at_once(queue: AlertQueue, clock: FakeClock) -> None:
    job_id = alert(queue, "bad")
    claimed = queue.claim("w")
    assert claimed is not None
    job = queue.fail(job_id, "payload has no labels", retry=False)
    update = {"status": "failed", "error": "payload has no labels", "finished_at": at(T0)}
    assert job == claimed.model_copy(update=update)


def test_retry_with_delay_is_not_claimable_before_the_delay(queue: AlertQueue, clock: FakeClock) -> None:
    job_id = alert(queue, "flaky")
    queue.claim("w")
    queue.fail(job_id, "503", retry=True, retry_delay_s=10)
    assert queue.claim("w") is None
    clock.now += 10
    claimed = queue.claim("w")
    assert claimed is not None and claimed.id == job_id


def test_job_whose_lease_expired_can_be_claimed_by_another_worker(
    queue: AlertQueue, clock: FakeClock
) -> None:
    job_id = alert(queue, "slow")
    queue.claim("hung", lease_s=10)
    assert queue.claim("other", lease_s=10) is None
    clock.now += 10
    taken = queue.claim("other", lease_s=10)
    assert taken is not None and (taken.id, taken.worker, taken.attempts) == (job_id, "other", 2)


def test_late_answer_for_a_finished_job_changes_nothing(queue: AlertQueue) -> None:
    job_id = alert(queue, "a")
    queue.claim("w")
    done = queue.complete(job_id, {"n": 1})
    assert queue.fail(job_id, "late", retry=True) == done
    assert queue.complete(job_id, {"n": 2}) == done


def test_finishing_an_unknown_job_is_a_lookup_error(queue: AlertQueue) -> None:
    with pytest.raises(LookupError, match="no job 'nope'"):
        queue.complete("nope", {})
    with pytest.raises(LookupError, match="no job 'nope'"):
        queue.fail("nope", "x", retry=True)
    assert queue.get("nope") is None


def test_payload_that_is_not_json_is_rejected_with_a_clear_message(queue: AlertQueue) -> None:
    with pytest.raises(ValueError, match="payload must be JSON-serialisable"):
        queue.enqueue("alert", {"when": object()}, dedupe_key=None, group_key=None)
    with pytest.raises(ValueError, match="non-empty kind"):
        queue.enqueue("", {}, dedupe_key=None, group_key=None)
    assert queue.depth() == 0


def test_wait_for_work_is_woken_by_an_enqueue(queue: AlertQueue) -> None:
    waiting = threading.Event()
    answers: list[bool] = []

    def waiter() -> None:
        waiting.set()
        answers.append(queue.wait_for_work(timeout=30))

    thread = threading.Thread(target=waiter)
    thread.start()
    assert waiting.wait(timeout=10)
    alert(queue, "a")
    thread.join(timeout=10)
    assert answers == [True]


def test_wait_for_work_returns_at_once_when_a_job_is_claimable_and_false_on_timeout(
    queue: AlertQueue,
) -> None:
    assert queue.wait_for_work(timeout=0.01) is False
    alert(queue, "a")
    assert queue.wait_for_work(timeout=30) is True


def test_group_incident_mapping_is_stored_replaced_and_survives_reopen(path: Path, clock: FakeClock) -> None:
    with AlertQueue(path, clock=clock) as queue:
        assert queue.group_incident("g1") is None
        queue.set_group_incident("g1", "inc-1")
        queue.set_group_incident("g2", "inc-2")
        queue.set_group_incident("g1", "inc-3")
    with AlertQueue(path, clock=clock) as reopened:
        assert [reopened.group_incident(g) for g in ("g1", "g2", "g3")] == ["inc-3", "inc-2", None]
        with pytest.raises(ValueError, match="non-empty group_key and incident_id"):
            reopened.set_group_incident("", "inc-4")


def test_prune_deletes_only_finished_jobs_older_than_the_cutoff(queue: AlertQueue, clock: FakeClock) -> None:
    old_done, old_failed, recent_done, pending = (alert(queue, n) for n in ("a", "b", "c", "d"))
    for _ in (old_done, old_failed):
        queue.claim("w")
    queue.complete(old_done, {})
    queue.fail(old_failed, "x", retry=False)
    clock.now += 3600
    queue.claim("w")
    queue.complete(recent_done, {})
    clock.now += 60
    assert queue.prune(older_than_s=600) == 2
    kept = [queue.get(j) is not None for j in (old_done, old_failed, recent_done, pending)]
    assert kept == [False, False, True, True]


def test_closed_queue_refuses_work(queue: AlertQueue) -> None:
    queue.close()
    queue.close()  # twice is fine
    with pytest.raises(QueueClosedError, match="is closed"):
        alert(queue, "a")


def test_unopenable_path_is_a_backend_error_naming_the_operation_and_path(tmp_path: Path) -> None:
    with pytest.raises(QueueBackendError, match="alert queue open failed") as raised:
        AlertQueue(tmp_path)  # a folder, not a file
    assert raised.value.params == {"path": str(tmp_path)}


def test_invalid_limits_are_rejected(path: Path) -> None:
    with pytest.raises(ValueError, match="capacity >= 1"):
        AlertQueue(path, capacity=0)
