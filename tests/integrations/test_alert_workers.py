"""The worker pool over a real SQLite queue, with handlers that record what they were given."""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from integrations.alert_queue import AlertQueue, Job, NewJob
from integrations.alert_workers import PermanentJobError, RetryableJobError, WorkerPool, WorkerStats

WAIT_S = 30.0  # a bound on every wait; tests finish far sooner


@pytest.fixture
def queue(tmp_path: Path) -> Iterator[AlertQueue]:
    with AlertQueue(tmp_path / "alerts.sqlite") as q:
        yield q


class Recorder:
    """A thread-safe log of the jobs a handler saw, and of each on_done call."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.seen: list[str] = []
        self.done: list[tuple[str, str, dict[str, Any] | None, str | None]] = []

    def record(self, job: Job) -> None:
        with self.lock:
            self.seen.append(job.id)

    def on_done(self, job: Job, result: dict[str, Any] | None, error: str | None) -> None:
        with self.lock:
            self.done.append((job.id, job.status, result, error))


def enqueue(queue: AlertQueue, count: int, group: str | None = None) -> list[str]:
    jobs = [NewJob("alert", {"n": n}, group_key=group) for n in range(count)]
    return [result.job_id for result in queue.enqueue_many(jobs)]


def test_four_workers_process_every_one_of_200_jobs_exactly_once(queue: AlertQueue) -> None:
    recorder = Recorder()

    def handler(job: Job) -> dict[str, Any]:
        recorder.record(job)
        return {"n": job.payload["n"]}

    ids = enqueue(queue, 200)
    with WorkerPool(queue, handler, workers=4) as pool:
        assert pool.drain(timeout=WAIT_S)
    assert Counter(recorder.seen) == Counter(ids)
    assert pool.stats() == WorkerStats(processed=200, failed=0, retried=0, in_flight=0)
    assert queue.counts() == {"pending": 0, "in_progress": 0, "done": 200, "failed": 0}
    job = queue.get(ids[7])
    assert job is not None and (job.result, job.attempts) == ({"n": 7}, 1)


def test_jobs_enqueued_while_running_are_picked_up_without_polling(queue: AlertQueue) -> None:
    recorder = Recorder()

    def handler(job: Job) -> dict[str, Any]:
        recorder.record(job)
        return {}

    # A long idle poll: only the enqueue's wake-up can get these jobs done within the wait.
    with WorkerPool(queue, handler, workers=2, idle_poll_s=3600) as pool:
        ids = enqueue(queue, 5)
        assert pool.drain(timeout=WAIT_S)
        assert sorted(recorder.seen) == sorted(ids)
        assert pool.stop(timeout=WAIT_S)  # stop wakes idle workers too


def test_job_that_fails_retryably_once_then_succeeds_is_done_after_two_attempts(queue: AlertQueue) -> None:
    recorder = Recorder()

    def handler(job: Job) -> dict[str, Any]:
        if job.attempts == 1:
            raise RetryableJobError("log backend answered 503")
        return {"incident_id": "inc-1"}

    [job_id] = enqueue(queue, 1)
    with WorkerPool(queue, handler, retry_delay_s=0, on_done=recorder.on_done) as pool:
        assert pool.drain(timeout=WAIT_S)
    job = queue.get(job_id)
    assert job is not None
    assert (job.status, job.attempts, job.result) == ("done", 2, {"incident_id": "inc-1"})
    assert recorder.done == [
        (job_id, "pending", None, "RetryableJobError: log backend answered 503"),
        (job_id, "done", {"incident_id": "inc-1"}, None),
    ]
    assert pool.stats() == WorkerStats(processed=1, failed=0, retried=1, in_flight=0)


def test_job_whose_handler_keeps_raising_fails_after_max_attempts(queue: AlertQueue) -> None:
    attempts: list[int] = []

    def handler(job: Job) -> dict[str, Any]:
        attempts.append(job.attempts)
        raise KeyError("labels")  # a bug in the handler: logged and retried like a transient error

    [job_id] = enqueue(queue, 1)
    with WorkerPool(queue, handler, retry_delay_s=0) as pool:
        assert pool.drain(timeout=WAIT_S)
    job = queue.get(job_id)
    assert job is not None
    assert (job.status, job.attempts, job.error) == ("failed", 3, "KeyError: 'labels'")
    assert attempts == [1, 2, 3]
    assert pool.stats() == WorkerStats(processed=0, failed=1, retried=2, in_flight=0)


def test_permanent_error_fails_the_job_without_retry(queue: AlertQueue) -> None:
    def handler(job: Job) -> dict[str, Any]:
        raise PermanentJobError("alert has no service label")

    [job_id] = enqueue(queue, 1)
    with WorkerPool(queue, handler, retry_delay_s=0) as pool:
        assert pool.drain(timeout=WAIT_S)
    job = queue.get(job_id)
    assert job is not None
    assert (job.status, job.attempts, job.error) == (
        "failed",
        1,
        "PermanentJobError: alert has no service label",
    )


def test_handler_result_that_is_not_json_fails_the_job_without_retry(queue: AlertQueue) -> None:
    [job_id] = enqueue(queue, 1)
    with WorkerPool(queue, lambda job: {"at": object()}, retry_delay_s=0) as pool:
        assert pool.drain(timeout=WAIT_S)
    job = queue.get(job_id)
    assert job is not None and (job.status, job.attempts) == ("failed", 1)
    assert job.error is not None and job.error.startswith("the handler returned an unusable result")


def test_failing_on_done_hook_does_not_stop_the_worker(queue: AlertQueue) -> None:
    def hook(job: Job, result: dict[str, Any] | None, error: str | None) -> None:
        raise RuntimeError("metrics sink down")

    enqueue(queue, 3)
    with WorkerPool(queue, lambda job: {}, workers=1, on_done=hook) as pool:
        assert pool.drain(timeout=WAIT_S)
    assert queue.counts()["done"] == 3


def test_graceful_stop_finishes_the_running_job_and_claims_no_more(queue: AlertQueue) -> None:
    started = threading.Event()
    release = threading.Event()
    recorder = Recorder()

    def handler(job: Job) -> dict[str, Any]:
        recorder.record(job)
        started.set()
        assert release.wait(timeout=WAIT_S)
        return {"finished": True}

    first, second = enqueue(queue, 2)
    pool = WorkerPool(queue, handler, workers=1)
    pool.start()
    assert started.wait(timeout=WAIT_S)
    assert pool.in_flight == 1
    pool.request_stop()
    release.set()
    assert pool.stop(timeout=WAIT_S)
    assert recorder.seen == [first]
    assert [queue.get(j).status for j in (first, second)] == ["done", "pending"]  # type: ignore[union-attr]
    assert (pool.running, pool.processed, pool.in_flight) == (False, 1, 0)


def test_stop_gives_up_after_its_timeout_when_a_job_is_stuck(queue: AlertQueue) -> None:
    started = threading.Event()
    release = threading.Event()

    def handler(job: Job) -> dict[str, Any]:
        started.set()
        assert release.wait(timeout=WAIT_S)
        return {}

    enqueue(queue, 1)
    pool = WorkerPool(queue, handler, workers=1)
    pool.start()
    assert started.wait(timeout=WAIT_S)
    assert pool.stop(timeout=0.05) is False
    release.set()
    assert pool.stop(timeout=WAIT_S) is True


def test_drain_times_out_when_no_worker_is_running(queue: AlertQueue) -> None:
    enqueue(queue, 1)
    pool = WorkerPool(queue, lambda job: {})
    assert pool.drain(timeout=0.05) is False


def test_jobs_of_one_group_run_in_order_and_never_concurrently(queue: AlertQueue) -> None:
    lock = threading.Lock()
    running: set[str] = set()
    overlaps: list[str] = []
    order: dict[str, list[int]] = {"A": [], "B": [], "C": []}

    def handler(job: Job) -> dict[str, Any]:
        group = job.group_key or ""
        with lock:
            if group in running:
                overlaps.append(group)
            running.add(group)
            order[group].append(job.payload["n"])
        with lock:
            running.discard(group)
        return {}

    # Interleaved, so that free workers are always tempted by another job of a busy group.
    queue.enqueue_many(
        [NewJob("alert", {"n": n}, group_key=group) for n in range(20) for group in ("A", "B", "C")]
    )
    with WorkerPool(queue, handler, workers=4) as pool:
        assert pool.drain(timeout=WAIT_S)
    assert overlaps == []
    assert order == {group: list(range(20)) for group in ("A", "B", "C")}


def test_pool_cannot_be_started_twice_or_built_without_workers(queue: AlertQueue) -> None:
    with pytest.raises(ValueError, match="at least 1 worker"):
        WorkerPool(queue, lambda job: {}, workers=0)
    with WorkerPool(queue, lambda job: {}) as pool:
        with pytest.raises(RuntimeError, match="already running"):
            pool.start()
