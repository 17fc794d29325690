"""The durable queue between alert webhooks and the workers that triage them.

A webhook answers 202 once its alerts are here, so the queue makes that answer a promise: SQLite
in WAL mode with `synchronous=FULL` (a committed job survives `kill -9` and power loss), and
`recover()`, run on open, hands back the jobs a dead process was running. One process owns a queue
file (a second one would recover, i.e. steal, the first one's running jobs). Jobs are JSON payloads
with a `kind`; the queue knows nothing of alert formats.
- A `dedupe_key` seen within `dedupe_window_s` returns the earlier job instead of adding one, so a
  re-sent alert (Alertmanager repeats, webhook retries) is triaged once.
- Jobs sharing a `group_key` run one at a time, in order: otherwise two workers could each create
  an incident for one alert group, or resolve it before its firing alert was triaged.
- `capacity` bounds the pending jobs; past it `enqueue` raises `QueueFullError` (HTTP 503).

Writes share one connection, taken in turns: an enqueue (a webhook waiting to answer) goes before
any worker waiting, so an ack waits for the transaction under way, never for a queue of them, and
enqueues that wait together commit in one transaction (one fsync). Reads (`get`, `counts`,
`group_incident`, the idle workers' look) run on a second connection without a write turn: WAL
lets them proceed while a write commits.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, get_args

from integrations import alert_queue_sql as sql
from integrations.alert_jobs import (
    EnqueueBatch,
    EnqueueResult,
    Job,
    JobStatus,
    NewJob,
    QueueBackendError,
    QueueClosedError,
    QueueFullError,
    job_of_row,
    to_json,
)
from integrations.write_turns import WriteTurns

__all__ = [
    "AlertQueue",
    "EnqueueResult",
    "Job",
    "JobStatus",
    "NewJob",
    "QueueBackendError",
    "QueueClosedError",
    "QueueFullError",
]


class AlertQueue:
    """A bounded, durable job queue in one SQLite file, safe to share between threads."""

    def __init__(
        self,
        path: Path,
        capacity: int = 10_000,
        dedupe_window_s: float = 300,
        clock: Callable[[], float] = time.time,
        *,
        max_attempts: int = 3,
    ) -> None:
        if capacity < 1 or dedupe_window_s < 0 or max_attempts < 1:
            raise ValueError(
                f"AlertQueue needs capacity >= 1, dedupe_window_s >= 0 and max_attempts >= 1; got capacity={capacity}, dedupe_window_s={dedupe_window_s}, max_attempts={max_attempts}"
            )
        self.path = path
        self.capacity = capacity
        self.dedupe_window_s = dedupe_window_s
        self.max_attempts = max_attempts
        self._clock = clock
        # Two connections, each used by one thread at a time: SQLite serialises writers anyway, and
        # owning the connections (not one per thread) lets close() release the file at once.
        self._writes = WriteTurns()
        self._batches: list[EnqueueBatch] = []  # enqueues waiting for a write turn; see enqueue_many
        self._batches_lock = threading.Lock()
        self._read_lock = threading.Lock()
        # Its own lock: waiters hold it while they look for work, and must not block enqueues.
        self._work = threading.Condition()
        self._generation = 0  # bumped whenever work may have appeared; see wait_for_work
        self._closed = False
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            self._conn = self._connect(path)
            self._conn.executescript(sql.SCHEMA)
            self._reader = self._connect(path)
        except (OSError, sqlite3.Error) as exc:
            raise QueueBackendError("open", {"path": str(path)}, str(exc)) from exc
        self.recover()

    @staticmethod
    def _connect(path: Path) -> sqlite3.Connection:
        conn = sqlite3.connect(path, timeout=30.0, isolation_level=None, check_same_thread=False)
        conn.row_factory = sqlite3.Row
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=FULL")
        return conn

    @contextmanager
    def _locked(self, operation: str, **params: Any) -> Iterator[sqlite3.Connection]:
        """A write transaction, once the workers and enqueues waiting before it had theirs."""
        with self._writes.turn(urgent=False), self._transaction(operation, **params) as conn:
            yield conn

    @contextmanager
    def _transaction(self, operation: str, **params: Any) -> Iterator[sqlite3.Connection]:
        """A write transaction on the write connection; the caller holds the write turn."""
        if self._closed:
            raise QueueClosedError(f"alert queue {self.path} is closed ({operation})")
        try:
            # IMMEDIATE takes the write lock up front, so check-then-insert is atomic even if
            # another process (a CLI reading the queue) has the file open.
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                yield self._conn
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise
            self._conn.execute("COMMIT")
        except sqlite3.Error as exc:
            raise QueueBackendError(operation, params, str(exc)) from exc

    def _read(
        self, operation: str, statement: str, args: Sequence[Any] | dict[str, Any], **params: Any
    ) -> list[sqlite3.Row]:
        """One read statement on the read connection: it waits for no writer."""
        with self._read_lock:
            if self._closed:
                raise QueueClosedError(f"alert queue {self.path} is closed ({operation})")
            try:
                return self._reader.execute(statement, args).fetchall()
            except sqlite3.Error as exc:
                raise QueueBackendError(operation, params, str(exc)) from exc

    def _signal(self) -> None:
        with self._work:
            self._generation += 1
            self._work.notify_all()

    def enqueue(
        self, kind: str, payload: dict[str, Any], *, dedupe_key: str | None, group_key: str | None
    ) -> EnqueueResult:
        """Add one job, or return the job with the same `dedupe_key` enqueued within the window.
        Raises QueueFullError when `capacity` jobs are pending (a duplicate is still answered)."""
        return self.enqueue_many([NewJob(kind, payload, dedupe_key, group_key)])[0]

    def enqueue_many(self, jobs: Sequence[NewJob]) -> list[EnqueueResult]:
        """Add several jobs in one transaction (one fsync), all or none; results in input order.
        A job whose dedupe key repeats an earlier one of the same batch is a duplicate of it."""
        if not jobs:
            return []
        if not all(job.kind for job in jobs):
            raise ValueError("every job needs a non-empty kind, e.g. 'alert'")
        batch = EnqueueBatch(jobs, [to_json(job.payload, "payload") for job in jobs])
        with self._batches_lock:
            self._batches.append(batch)
        # Group commit: whoever gets the write turn commits every batch waiting by then, so
        # webhooks answering at the same time share one transaction instead of queueing for one each.
        with self._writes.turn(urgent=True):
            if not batch.settled:
                with self._batches_lock:
                    group, self._batches = self._batches, []
                try:
                    self._commit(group)
                finally:
                    for unsettled in (b for b in group if not b.settled):
                        unsettled.error = QueueBackendError("enqueue", {}, "its group commit did not finish")
        if batch.error is not None:
            raise batch.error
        return [EnqueueResult(job_id=i, duplicate=d, queued=batch.queued) for i, d in batch.found]

    def _commit(self, group: list[EnqueueBatch]) -> None:
        """Settle each batch of `group`: admitted ones committed together, each overflowing one
        with a QueueFullError; a failed transaction settles all with its error."""
        keys = json.dumps(sorted({job.dedupe_key for b in group for job in b.jobs if job.dedupe_key}))
        rows: list[tuple[Any, ...]] = []
        try:
            with self._transaction("enqueue", jobs=sum(len(b.jobs) for b in group)) as conn:
                now = self._clock()
                (_, _, _, pending), *seen = conn.execute(sql.ENQUEUE_LOOK, (keys, now - self.dedupe_window_s))
                known: dict[str, str] = {row[2]: row[3] for row in seen}  # the latest job of each key
                for batch in group:
                    pending = self._admit(batch, known, pending, rows, now)
                if rows:
                    conn.executemany(sql.INSERT, rows)
        except (QueueBackendError, QueueClosedError) as err:
            for batch in group:
                batch.error = err
            return
        for batch in group:
            batch.queued, batch.committed = pending, batch.error is None
        if rows:
            self._signal()

    def _admit(
        self,
        batch: EnqueueBatch,
        known: dict[str, str],
        pending: int,
        rows: list[tuple[Any, ...]],
        now: float,
    ) -> int:
        """Add the batch's new jobs to `rows` and `known`, or none of them when it would overflow
        the capacity (its error says so); returns the pending count after it."""
        mine: dict[str, str] = {}
        new_rows: list[tuple[Any, ...]] = []
        for job, payload in zip(batch.jobs, batch.payloads, strict=True):
            key = job.dedupe_key
            if key and (earlier := mine.get(key) or known.get(key)):
                batch.found.append((earlier, True))
                continue
            if pending + len(new_rows) >= self.capacity:
                batch.found.clear()
                batch.error = QueueFullError(self.capacity, pending + len(new_rows))
                return pending
            job_id = uuid.uuid4().hex
            new_rows.append((job_id, job.kind, payload, key, job.group_key, now, now))
            if key:
                mine[key] = job_id
            batch.found.append((job_id, False))
        rows.extend(new_rows)
        known.update(mine)
        return pending + len(new_rows)

    def claim(self, worker: str, lease_s: float = 300) -> Job | None:
        """Mark the oldest claimable job in_progress for `worker` and return it; None when idle.
        The claim lasts `lease_s`; after that another worker may take the job over."""
        if lease_s <= 0:
            raise ValueError(f"lease_s must be positive, got {lease_s}")
        now = self._clock()
        with self._locked("claim", worker=worker) as conn:
            rows = conn.execute(
                sql.CLAIM, {"worker": worker, "now": now, "expires": now + lease_s}
            ).fetchall()
        return job_of_row(rows[0]) if rows else None

    def complete(self, job_id: str, result: dict[str, Any]) -> Job:
        """Record the result of a running job: it is done."""
        encoded = to_json(result, "result")
        with self._locked("complete", job_id=job_id) as conn:
            return self._finish(conn, job_id, ("done", encoded, None, self._clock(), None))

    def fail(
        self,
        job_id: str,
        error: str,
        retry: bool,
        max_attempts: int | None = None,
        *,
        retry_delay_s: float = 0,
    ) -> Job:
        """Record a failed attempt. With `retry`, the job goes back to pending (claimable after
        `retry_delay_s`) until it has been attempted `max_attempts` times (default: the queue's);
        then, or without `retry`, it is failed.
        """
        limit = self.max_attempts if max_attempts is None else max_attempts
        with self._locked("fail", job_id=job_id, retry=retry) as conn:
            row = conn.execute("SELECT attempts FROM jobs WHERE id = ?", (job_id,)).fetchone()
            now, again = self._clock(), retry and row is not None and row[0] < limit
            retried = ("pending", None, error, None, now + retry_delay_s)
            job = self._finish(conn, job_id, retried if again else ("failed", None, error, now, None))
        if job.status == "pending":
            self._signal()
        return job

    def _finish(self, conn: sqlite3.Connection, job_id: str, changes: tuple[Any, ...]) -> Job:
        """Apply (status, result, error, finished_at, available_at) to a running job."""
        # Only a running job changes: if its lease expired and another worker already finished
        # it, this late answer is dropped and the job is returned as it stands.
        rows = conn.execute(sql.FINISH, (*changes, job_id)).fetchall()
        if not rows:
            rows = conn.execute("SELECT * FROM jobs WHERE id = ?", (job_id,)).fetchall()
        if not rows:
            raise LookupError(f"no job {job_id!r} in the alert queue (never enqueued, or pruned)")
        return job_of_row(rows[0])

    def recover(self) -> int:
        """Put the jobs of a process that died back to pending; returns how many. A job attempted
        `max_attempts` times is failed instead: one that kills the process would crash every restart.
        """
        now = self._clock()
        with self._locked("recover") as conn:
            conn.execute(
                "UPDATE jobs SET status = 'failed', finished_at = ?, lease_expires_at = NULL,"
                " error = 'interrupted ' || attempts || ' times: the process stopped while running it'"
                " WHERE status = 'in_progress' AND attempts >= ?",
                (now, self.max_attempts),
            )
            moved = conn.execute(
                "UPDATE jobs SET status = 'pending', available_at = ?, lease_expires_at = NULL"
                " WHERE status = 'in_progress'",
                (now,),
            ).rowcount
        if moved:
            self._signal()
        return moved

    def wait_for_work(self, timeout: float, cancel: threading.Event | None = None) -> bool:
        """Block until a job may be claimable (now, or after an enqueue, retry or `wake()`): True
        means "try claim()", not a promise. False after `timeout` seconds, or once `cancel` is set
        (set it, then call `wake()`). A retry's backoff ending wakes no one: idle workers notice
        it at their next timeout."""
        stopped = cancel.is_set if cancel is not None else lambda: False
        # Read before the look: a job committed after the look bumps it, so no wake-up is lost.
        with self._work:
            generation = self._generation
        if self._read("wait_for_work", sql.NEXT_CLAIMABLE, {"now": self._clock()})[0][0] is not None:
            return not stopped()
        with self._work:
            self._work.wait_for(lambda: self._generation != generation or self._closed or stopped(), timeout)
            return self._generation != generation and not (self._closed or stopped())

    def wake(self) -> None:
        """Wake every `wait_for_work` caller, e.g. so a stopping worker pool notices at once."""
        self._signal()

    def get(self, job_id: str) -> Job | None:
        rows = self._read("get", "SELECT * FROM jobs WHERE id = ?", (job_id,), job_id=job_id)
        return job_of_row(rows[0]) if rows else None

    def counts(self) -> dict[str, int]:
        """Jobs per status, every status present."""
        rows = self._read("counts", "SELECT status, COUNT(*) FROM jobs GROUP BY status", ())
        return dict.fromkeys(get_args(JobStatus), 0) | {row[0]: row[1] for row in rows}

    def depth(self) -> int:
        """Jobs not finished yet: pending plus in_progress."""
        return sum(n for status, n in self.counts().items() if status in ("pending", "in_progress"))

    def group_incident(self, group_key: str) -> str | None:
        """The incident an alert group was stored as, if any."""
        statement = "SELECT incident_id FROM group_incidents WHERE group_key = ?"
        rows = self._read("group_incident", statement, (group_key,), group_key=group_key)
        return str(rows[0][0]) if rows else None

    def set_group_incident(self, group_key: str, incident_id: str) -> None:
        """Remember (or replace) the incident of an alert group."""
        if not group_key or not incident_id:
            raise ValueError("set_group_incident needs a non-empty group_key and incident_id")
        now = self._clock()
        with self._locked("set_group_incident", group_key=group_key, incident_id=incident_id) as c:
            c.execute(sql.SET_GROUP_INCIDENT, (group_key, incident_id, now))

    def prune(self, older_than_s: float) -> int:
        """Delete done and failed jobs finished more than `older_than_s` ago; returns how many.
        Group incident mappings are kept: a group may fire again long after its jobs are gone."""
        cutoff = self._clock() - older_than_s
        with self._locked("prune", older_than_s=older_than_s) as conn:
            deleted: int = conn.execute(
                "DELETE FROM jobs WHERE status IN ('done', 'failed') AND finished_at < ?", (cutoff,)
            ).rowcount
        return deleted

    def close(self) -> None:
        """Close the file; later calls raise QueueClosedError. Safe to call twice."""
        with self._writes.turn(urgent=True), self._read_lock:
            if self._closed:
                return
            self._closed = True
            self._reader.close()
            self._conn.close()
        self._signal()

    def __enter__(self) -> AlertQueue:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
