"""What the alert queue stores and answers: jobs, enqueue results, its errors, and the enqueue
batches waiting for the transaction that commits them."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict

JobStatus = Literal["pending", "in_progress", "done", "failed"]


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


def to_json(value: dict[str, Any], what: str) -> str:
    try:
        return json.dumps(value, separators=(",", ":"))
    except (TypeError, ValueError) as exc:
        raise ValueError(f"the job {what} must be JSON-serialisable: {exc}") from exc


def job_of_row(row: sqlite3.Row) -> Job:
    # pydantic reads the epoch-second REAL columns as UTC datetimes.
    fields = dict(row) | {"payload": json.loads(row["payload"])}
    return Job.model_validate(fields | {"result": row["result"] and json.loads(row["result"])})


@dataclass
class EnqueueBatch:
    """One `enqueue_many` call, until a transaction settles it with results or an error."""

    jobs: Sequence[NewJob]
    payloads: list[str]
    found: list[tuple[str, bool]] = field(default_factory=list)  # (job id, duplicate) per job
    queued: int = 0
    error: Exception | None = None
    committed: bool = False

    @property
    def settled(self) -> bool:
        return self.committed or self.error is not None
