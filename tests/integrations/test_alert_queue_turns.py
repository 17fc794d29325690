"""Who waits for whom in the alert queue: reads wait for no writer, an enqueue goes before the
workers waiting, and enqueues that wait together commit together.

A write transaction is held open by a clock that blocks inside it, the queue's own injected
dependency; the tests then start the callers that must wait, and release it.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from integrations.alert_queue import AlertQueue, NewJob, QueueFullError

T0 = 1_750_000_000.0
WAIT_S = 30.0


class GatedClock:
    """A fixed clock whose armed call blocks until released, e.g. inside a write transaction."""

    def __init__(self) -> None:
        self.calls = 0
        self.entered = threading.Event()
        self.release = threading.Event()
        self._armed = False
        self._lock = threading.Lock()

    def hold_next_call(self) -> None:
        with self._lock:
            self._armed = True

    def __call__(self) -> float:
        with self._lock:
            self.calls += 1
            armed, self._armed = self._armed, False
        if armed:
            self.entered.set()
            assert self.release.wait(timeout=WAIT_S)
        return T0


@pytest.fixture
def clock() -> GatedClock:
    return GatedClock()


@pytest.fixture
def queue(tmp_path: Path, clock: GatedClock) -> Iterator[AlertQueue]:
    with AlertQueue(tmp_path / "alerts.sqlite", capacity=2, clock=clock) as q:
        yield q


class Caller(threading.Thread):
    """Runs one queue call in a thread and keeps its outcome."""

    def __init__(self, call: Callable[[], Any]) -> None:
        super().__init__(daemon=True)
        self.call = call
        self.outcome: Any = None

    def run(self) -> None:
        try:
            self.outcome = self.call()
        except QueueFullError as err:
            self.outcome = err


def wait_for_writers(queue: AlertQueue, count: int) -> None:
    """Until `count` callers wait for the write turn (the queue's own count)."""
    deadline = time.monotonic() + WAIT_S
    while queue._writes.waiting < count:
        assert time.monotonic() < deadline, f"{count} callers never waited for the write turn"
        time.sleep(0.001)  # the polling interval, not a wait for the work itself


def hold_a_write_transaction(queue: AlertQueue, clock: GatedClock) -> Caller:
    """A worker completing its job, stopped inside the transaction until `clock.release` is set."""
    job_id = queue.enqueue("alert", {"n": 0}, dedupe_key=None, group_key=None).job_id
    assert queue.claim("w1") is not None
    clock.hold_next_call()
    worker = Caller(lambda: queue.complete(job_id, {"ok": True}))
    worker.start()
    assert clock.entered.wait(timeout=WAIT_S)
    return worker


def finish(*callers: Caller, clock: GatedClock) -> None:
    clock.release.set()
    for caller in callers:
        caller.join(timeout=WAIT_S)
        assert not caller.is_alive()


def test_reads_answer_while_a_write_transaction_is_open(queue: AlertQueue, clock: GatedClock) -> None:
    worker = hold_a_write_transaction(queue, clock)
    assert queue.counts() == {"pending": 0, "in_progress": 1, "done": 0, "failed": 0}
    assert queue.group_incident("g") is None
    assert queue.wait_for_work(timeout=0) is False
    finish(worker, clock=clock)
    assert queue.counts()["done"] == 1


def test_an_enqueue_gets_the_write_turn_before_a_worker_that_waited_longer(
    queue: AlertQueue, clock: GatedClock
) -> None:
    worker = hold_a_write_transaction(queue, clock)
    claimer = Caller(lambda: queue.claim("w2"))
    claimer.start()
    wait_for_writers(queue, 1)
    enqueuer = Caller(lambda: queue.enqueue("alert", {"n": 1}, dedupe_key=None, group_key=None))
    enqueuer.start()
    wait_for_writers(queue, 2)
    finish(worker, enqueuer, claimer, clock=clock)
    # The claim ran after the enqueue had committed, so it found the new job.
    assert claimer.outcome is not None and claimer.outcome.id == enqueuer.outcome.job_id


def test_enqueues_that_wait_together_commit_in_one_transaction(queue: AlertQueue, clock: GatedClock) -> None:
    worker = hold_a_write_transaction(queue, clock)
    enqueuers = []
    for n in (1, 2):
        enqueuers.append(
            Caller(lambda n=n: queue.enqueue("alert", {"n": n}, dedupe_key=f"fp{n}", group_key=None))
        )
        enqueuers[-1].start()
        wait_for_writers(queue, n)
    calls_before = clock.calls
    finish(worker, *enqueuers, clock=clock)
    assert clock.calls - calls_before == 1  # one transaction (one clock reading) for both enqueues
    assert [e.outcome.duplicate for e in enqueuers] == [False, False]
    assert [e.outcome.queued for e in enqueuers] == [2, 2]
    assert sorted(queue.get(e.outcome.job_id).payload["n"] for e in enqueuers) == [1, 2]  # type: ignore[union-attr]


def test_a_batch_that_overflows_a_shared_transaction_fails_alone(
    queue: AlertQueue, clock: GatedClock
) -> None:
    worker = hold_a_write_transaction(queue, clock)
    first = Caller(lambda: queue.enqueue_many([NewJob("alert", {"n": 1}), NewJob("alert", {"n": 2})]))
    first.start()
    wait_for_writers(queue, 1)
    second = Caller(lambda: queue.enqueue_many([NewJob("alert", {"n": 3})]))
    second.start()
    wait_for_writers(queue, 2)
    finish(worker, first, second, clock=clock)
    assert isinstance(second.outcome, QueueFullError) and str(second.outcome).startswith(
        "alert queue is full: 2 pending jobs reach its capacity of 2"
    )
    assert [r.queued for r in first.outcome] == [2, 2]
    assert queue.counts() == {"pending": 2, "in_progress": 0, "done": 1, "failed": 0}
