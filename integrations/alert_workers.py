"""Worker threads that drain the alert queue: claim a job, run the handler, record the outcome.

The handler is the whole job (fetch logs, triage, store the incident, notify) and returns a JSON
result. How it ends decides what happens next:
- it returns: the job is done;
- it raises `RetryableJobError` (a backend is down, a receiver rate-limits): the job goes back to
  the queue, claimable again after an exponential backoff, until the queue's `max_attempts`;
- it raises `PermanentJobError` (the payload can never be processed): the job fails at once;
- it raises anything else: a bug or an unforeseen failure, logged with its traceback and retried
  like a `RetryableJobError`, since a flaky dependency is likelier than a deterministic bug.

A job runs in one thread at a time, and `stop()` lets the running jobs finish: whatever is still
pending stays in the durable queue for the next start.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from integrations.alert_queue import AlertQueue, Job, QueueClosedError

logger = logging.getLogger(__name__)

Handler = Callable[[Job], dict[str, Any]]
# Called after every attempt with the job as it now stands (done, failed, or pending again for a
# retry), the handler's result, and the error text.
OnDone = Callable[[Job, dict[str, Any] | None, str | None], None]


class RetryableJobError(RuntimeError):
    """A transient failure: the job is tried again later."""


class PermanentJobError(RuntimeError):
    """The job can never succeed (e.g. its payload is unusable): it fails without a retry."""


@dataclass(frozen=True)
class WorkerStats:
    """Counters since the pool was built, for metrics."""

    processed: int  # jobs completed
    failed: int  # jobs that ended failed (no retry left, or a permanent error)
    retried: int  # attempts that failed and put the job back in the queue
    in_flight: int  # jobs being handled right now


class WorkerPool:
    """`workers` threads that run `handler` on the queue's jobs until stopped."""

    def __init__(
        self,
        queue: AlertQueue,
        handler: Handler,
        workers: int = 2,
        name: str = "alert-worker",
        *,
        lease_s: float = 300,
        retry_delay_s: float = 10.0,
        idle_poll_s: float = 1.0,
        on_done: OnDone | None = None,
    ) -> None:
        if workers < 1:
            raise ValueError(f"a worker pool needs at least 1 worker, got {workers}")
        self.queue = queue
        self.handler = handler
        self.workers = workers
        self.name = name
        self.lease_s = lease_s
        self.retry_delay_s = retry_delay_s  # doubled on each further attempt
        # Idle workers sleep on the queue's condition and are woken by enqueues; this bound only
        # matters for jobs that become claimable without an enqueue (a retry's backoff ending).
        self.idle_poll_s = idle_poll_s
        self.on_done = on_done
        self._threads: list[threading.Thread] = []
        self._stopping = threading.Event()
        # Guards the counters and wakes `drain` whenever a job finishes an attempt.
        self._changed = threading.Condition()
        self._processed = self._failed = self._retried = self._in_flight = 0

    # -- lifecycle --

    def start(self) -> None:
        """Start the worker threads. Raises RuntimeError if they are already running."""
        if any(thread.is_alive() for thread in self._threads):
            raise RuntimeError(f"worker pool {self.name!r} is already running")
        self._stopping.clear()
        self._threads = [
            threading.Thread(
                target=self._run, args=(f"{self.name}-{i}",), name=f"{self.name}-{i}", daemon=True
            )
            for i in range(self.workers)
        ]
        for thread in self._threads:
            thread.start()

    def request_stop(self) -> None:
        """Ask the workers to stop claiming jobs, without waiting (e.g. from a signal handler)."""
        self._stopping.set()
        self.queue.wake()

    def stop(self, timeout: float = 30.0) -> bool:
        """Stop claiming, let the running jobs finish; False if some worker is still busy after
        `timeout` seconds (its job stays in_progress and is recovered on the next open)."""
        self.request_stop()
        deadline = time.monotonic() + timeout
        for thread in self._threads:
            thread.join(max(0.0, deadline - time.monotonic()))
        return not any(thread.is_alive() for thread in self._threads)

    def drain(self, timeout: float) -> bool:
        """Wait until the queue has no pending or running job and every `on_done` hook has
        returned; False after `timeout` seconds."""
        deadline = time.monotonic() + timeout
        with self._changed:
            # Workers notify under this lock after each attempt is recorded: no change is missed.
            while self._in_flight > 0 or self.queue.depth() > 0:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._changed.wait(remaining)
        return True

    @property
    def running(self) -> bool:
        return any(thread.is_alive() for thread in self._threads) and not self._stopping.is_set()

    def __enter__(self) -> WorkerPool:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    # -- metrics --

    def stats(self) -> WorkerStats:
        with self._changed:
            return WorkerStats(self._processed, self._failed, self._retried, self._in_flight)

    @property
    def processed(self) -> int:
        return self.stats().processed

    @property
    def failed(self) -> int:
        return self.stats().failed

    @property
    def in_flight(self) -> int:
        return self.stats().in_flight

    # -- the worker thread --

    def _run(self, worker: str) -> None:
        claimant = f"{worker}:{os.getpid()}"  # names the process too, for jobs seen after a restart
        while not self._stopping.is_set():
            try:
                job = self.queue.claim(claimant, self.lease_s)
                if job is None:
                    self.queue.wait_for_work(self.idle_poll_s, cancel=self._stopping)
                    continue
                self._process(job)
            except QueueClosedError:
                logger.warning("%s: the alert queue was closed; the worker stops", worker)
                return
            except Exception:  # the top-level handler of this thread: a worker must not die
                logger.exception("%s: alert queue operation failed; trying again shortly", worker)
                self._stopping.wait(self.idle_poll_s)

    def _process(self, job: Job) -> None:
        with self._changed:
            self._in_flight += 1
        finished: Job | None = None
        try:
            result, error, retry = self._handle(job)
            if result is not None:
                try:
                    finished = self.queue.complete(job.id, result)
                except ValueError as exc:  # the result is not JSON: retrying will not change that
                    result, error, retry = None, f"the handler returned an unusable result: {exc}", False
            if finished is None:
                backoff = self.retry_delay_s * 2 ** max(0, job.attempts - 1)
                finished = self.queue.fail(job.id, error or "no result", retry, retry_delay_s=backoff)
            if self.on_done is not None:
                self._call_on_done(finished, result, error)
        finally:
            # Counted and announced only once the outcome (and the hook) is done, so that after
            # drain() returns, the counters and the hook's effects are complete.
            with self._changed:
                self._in_flight -= 1
                if finished is not None:
                    self._count(finished)
                self._changed.notify_all()

    def _handle(self, job: Job) -> tuple[dict[str, Any] | None, str | None, bool]:
        """Run the handler: (result, error text, whether to retry)."""
        try:
            result = self.handler(job)
        except RetryableJobError as exc:
            logger.warning(
                "alert job %s (%s) attempt %d failed, will retry: %s", job.id, job.kind, job.attempts, exc
            )
            return None, f"{type(exc).__name__}: {exc}", True
        except PermanentJobError as exc:
            logger.error("alert job %s (%s) cannot be processed: %s", job.id, job.kind, exc)
            return None, f"{type(exc).__name__}: {exc}", False
        except Exception as exc:  # the handler boundary: its bugs must not take the worker down
            logger.exception("alert job %s (%s) attempt %d raised", job.id, job.kind, job.attempts)
            return None, f"{type(exc).__name__}: {exc}", True
        if not isinstance(result, dict):
            return None, f"the handler returned {type(result).__name__}, not a dict", False
        return result, None, False

    def _count(self, job: Job) -> None:
        if job.status == "done":
            self._processed += 1
        elif job.status == "failed":
            self._failed += 1
        elif job.status == "pending":
            self._retried += 1

    def _call_on_done(self, job: Job, result: dict[str, Any] | None, error: str | None) -> None:
        assert self.on_done is not None
        try:
            self.on_done(job, result, error)
        except Exception:  # a hook's failure must not undo the job's recorded outcome
            logger.exception("on_done hook failed for alert job %s", job.id)
