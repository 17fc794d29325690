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
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Literal, get_args

from pydantic import BaseModel, ConfigDict

JobStatus = Literal["pending", "in_progress", "done", "failed"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS jobs (
    seq INTEGER PRIMARY KEY AUTOINCREMENT, id TEXT NOT NULL UNIQUE, kind TEXT NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('pending', 'in_progress', 'done', 'failed')),
    payload TEXT NOT NULL, dedupe_key TEXT, group_key TEXT, attempts INTEGER NOT NULL DEFAULT 0,
    result TEXT, error TEXT, worker TEXT, enqueued_at REAL NOT NULL, available_at REAL NOT NULL,
    started_at REAL, lease_expires_at REAL, finished_at REAL
);
CREATE INDEX IF NOT EXISTS jobs_by_status ON jobs (status, seq);
CREATE INDEX IF NOT EXISTS jobs_by_dedupe ON jobs (dedupe_key, enqueued_at);
CREATE INDEX IF NOT EXISTS jobs_by_group_status ON jobs (group_key, status, seq);
CREATE TABLE IF NOT EXISTS group_incidents (
    group_key TEXT PRIMARY KEY, incident_id TEXT NOT NULL, updated_at REAL NOT NULL
);
"""
# The oldest job of each group goes first; later ones wait while it is pending or running.
_GROUP_IS_FREE = """(j.group_key IS NULL OR NOT EXISTS (
    SELECT 1 FROM jobs e WHERE e.group_key = j.group_key AND e.seq < j.seq
    AND e.status IN ('pending', 'in_progress')))"""
_NEXT_PENDING = f"""SELECT j.seq FROM jobs j WHERE j.status = 'pending' AND j.available_at <= ?
    AND {_GROUP_IS_FREE} ORDER BY j.seq LIMIT 1"""
# A running job whose lease ran out belongs to a worker that hung; another worker may take it over.
_NEXT_EXPIRED = """SELECT j.seq FROM jobs j WHERE j.status = 'in_progress' AND j.lease_expires_at <= ?
    ORDER BY j.seq LIMIT 1"""
_DUPLICATE = "SELECT id FROM jobs WHERE dedupe_key = ? AND enqueued_at > ? ORDER BY enqueued_at DESC"
_FINISH = """UPDATE jobs SET status = ?, result = COALESCE(?, result), error = COALESCE(?, error),
    finished_at = ?, available_at = COALESCE(?, available_at), lease_expires_at = NULL
    WHERE id = ? AND status = 'in_progress'"""


class Job(BaseModel):
    """One unit of work and where it stands. Timestamps are UTC."""

    model_config = ConfigDict(frozen=True)

    id: str
    kind: str
    status: JobStatus
    payload: dict[str, Any]
    dedupe_key: str | None
    group_key: str | None
    attempts: int  # how many times a worker has claimed it
    result: dict[str, Any] | None
    error: str | None  # the last failure, kept after a retry succeeds
    worker: str | None  # the last worker that claimed it
    enqueued_at: datetime
    available_at: datetime  # not claimed before this (a retry's backoff)
    started_at: datetime | None
    finished_at: datetime | None


class EnqueueResult(BaseModel):
    """What the webhook reports back: the job id, whether it was a repeat, the backlog after it."""

    model_config = ConfigDict(frozen=True)

    job_id: str
    duplicate: bool
    queued: int  # pending jobs once this enqueue committed


@dataclass(frozen=True)
class NewJob:
    kind: str
    payload: dict[str, Any]
    dedupe_key: str | None = None
    group_key: str | None = None


class QueueFullError(RuntimeError):
    """`capacity` jobs are pending; the caller should answer 503 with Retry-After."""

    def __init__(self, capacity: int, pending: int) -> None:
        self.capacity = capacity
        self.pending = pending
        msg = f"alert queue is full: {pending} pending jobs reach its capacity of {capacity}"
        super().__init__(f"{msg}; retry later, add workers, or raise the capacity")


class QueueBackendError(RuntimeError):
    """SQLite failed an operation (disk full, I/O error, locked by another process)."""

    def __init__(self, operation: str, params: dict[str, Any], reason: str) -> None:
        self.operation = operation
        self.params = params
        self.reason = reason
        super().__init__(f"alert queue {operation} failed ({reason}); parameters: {params}")


class QueueClosedError(RuntimeError):
    """The queue was used after `close()`."""


def _to_json(value: dict[str, Any], what: str) -> str:
    try:
        return json.dumps(value, separators=(",", ":"))
    except (TypeError, ValueError) as exc:
        raise ValueError(f"the job {what} must be JSON-serialisable: {exc}") from exc


def _job(row: sqlite3.Row) -> Job:
    # pydantic reads the epoch-second REAL columns as UTC datetimes.
    fields = dict(row) | {"payload": json.loads(row["payload"])}
    return Job.model_validate(fields | {"result": row["result"] and json.loads(row["result"])})


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
        # One connection behind a lock: SQLite serialises writers anyway, and a single connection
        # lets close() release the file at once instead of waiting for per-thread connections.
        self._lock = threading.Lock()
        # Its own lock: waiters hold it while they look for work, and must not block enqueues.
        self._work = threading.Condition()
        self._generation = 0  # bumped whenever work may have appeared; see wait_for_work
        self._closed = False
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            conn = sqlite3.connect(path, timeout=30.0, isolation_level=None, check_same_thread=False)
            conn.row_factory = sqlite3.Row
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=FULL")
            conn.executescript(_SCHEMA)
        except (OSError, sqlite3.Error) as exc:
            raise QueueBackendError("open", {"path": str(path)}, str(exc)) from exc
        self._conn = conn
        self.recover()

    @contextmanager
    def _locked(self, operation: str, **params: Any) -> Iterator[sqlite3.Connection]:
        with self._lock:
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

    def _signal(self) -> None:
        with self._work:
            self._generation += 1
            self._work.notify_all()

    def _next_claimable(self, conn: sqlite3.Connection, now: float) -> int | None:
        seqs = [row[0] for q in (_NEXT_PENDING, _NEXT_EXPIRED) if (row := conn.execute(q, (now,)).fetchone())]
        return min(seqs) if seqs else None

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
        encoded = [_to_json(job.payload, "payload") for job in jobs]
        now = self._clock()
        found: list[tuple[str, bool]] = []
        with self._locked("enqueue", jobs=len(jobs), kind=jobs[0].kind) as conn:
            pending = conn.execute("SELECT COUNT(*) FROM jobs WHERE status = 'pending'").fetchone()[0]
            for job, payload in zip(jobs, encoded, strict=True):
                since = now - self.dedupe_window_s
                if job.dedupe_key and (row := conn.execute(_DUPLICATE, (job.dedupe_key, since)).fetchone()):
                    found.append((row[0], True))
                    continue
                if pending >= self.capacity:
                    raise QueueFullError(self.capacity, pending)  # rolls back the whole batch
                job_id = uuid.uuid4().hex
                conn.execute(
                    "INSERT INTO jobs (id, kind, status, payload, dedupe_key, group_key,"
                    " enqueued_at, available_at) VALUES (?, ?, 'pending', ?, ?, ?, ?, ?)",
                    (job_id, job.kind, payload, job.dedupe_key, job.group_key, now, now),
                )
                pending += 1
                found.append((job_id, False))
        if any(not duplicate for _, duplicate in found):
            self._signal()
        return [EnqueueResult(job_id=i, duplicate=d, queued=pending) for i, d in found]

    def claim(self, worker: str, lease_s: float = 300) -> Job | None:
        """Mark the oldest claimable job in_progress for `worker` and return it; None when idle.
        The claim lasts `lease_s`; after that another worker may take the job over."""
        if lease_s <= 0:
            raise ValueError(f"lease_s must be positive, got {lease_s}")
        now = self._clock()
        with self._locked("claim", worker=worker) as conn:
            seq = self._next_claimable(conn, now)
            if seq is None:
                return None
            conn.execute(
                "UPDATE jobs SET status = 'in_progress', worker = ?, attempts = attempts + 1,"
                " started_at = ?, lease_expires_at = ? WHERE seq = ?",
                (worker, now, now + lease_s, seq),
            )
            row = conn.execute("SELECT * FROM jobs WHERE seq = ?", (seq,)).fetchone()
        return _job(row)

    def complete(self, job_id: str, result: dict[str, Any]) -> Job:
        """Record the result of a running job: it is done."""
        encoded = _to_json(result, "result")
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
        conn.execute(_FINISH, (*changes, job_id))
        row = conn.execute("SELECT * FROM jobs WHERE id = ?", (job_id,)).fetchone()
        if row is None:
            raise LookupError(f"no job {job_id!r} in the alert queue (never enqueued, or pruned)")
        return _job(row)

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
        with self._locked("wait_for_work") as conn:
            if self._next_claimable(conn, self._clock()) is not None:
                return not stopped()
        with self._work:
            self._work.wait_for(lambda: self._generation != generation or self._closed or stopped(), timeout)
            return self._generation != generation and not (self._closed or stopped())

    def wake(self) -> None:
        """Wake every `wait_for_work` caller, e.g. so a stopping worker pool notices at once."""
        self._signal()

    def get(self, job_id: str) -> Job | None:
        with self._locked("get", job_id=job_id) as conn:
            row = conn.execute("SELECT * FROM jobs WHERE id = ?", (job_id,)).fetchone()
        return None if row is None else _job(row)

    def counts(self) -> dict[str, int]:
        """Jobs per status, every status present."""
        with self._locked("counts") as conn:
            rows = conn.execute("SELECT status, COUNT(*) FROM jobs GROUP BY status").fetchall()
        return dict.fromkeys(get_args(JobStatus), 0) | {row[0]: row[1] for row in rows}

    def depth(self) -> int:
        """Jobs not finished yet: pending plus in_progress."""
        return sum(n for status, n in self.counts().items() if status in ("pending", "in_progress"))

    def group_incident(self, group_key: str) -> str | None:
        """The incident an alert group was stored as, if any."""
        with self._locked("group_incident", group_key=group_key) as conn:
            row = conn.execute(
                "SELECT incident_id FROM group_incidents WHERE group_key = ?", (group_key,)
            ).fetchone()
        return None if row is None else str(row[0])

    def set_group_incident(self, group_key: str, incident_id: str) -> None:
        """Remember (or replace) the incident of an alert group."""
        if not group_key or not incident_id:
            raise ValueError("set_group_incident needs a non-empty group_key and incident_id")
        now = self._clock()
        with self._locked("set_group_incident", group_key=group_key, incident_id=incident_id) as c:
            c.execute(
                "INSERT INTO group_incidents VALUES (?, ?, ?) ON CONFLICT (group_key)"
                " DO UPDATE SET incident_id = excluded.incident_id, updated_at = excluded.updated_at",
                (group_key, incident_id, now),
            )

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
        with self._lock:
            if self._closed:
                return
            self._closed = True
            self._conn.close()
        self._signal()

    def __enter__(self) -> AlertQueue:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
