"""The durable audit log of feedback, and the current vote of each (incident, user).

SQLite in WAL mode with `synchronous=FULL`: a transaction that has committed survives `kill -9`
and power loss. The log is the source of truth; the incident payloads in Qdrant are a projection
of it that `IncidentStore` re-applies on open if a crash left them behind.

Each write is one `BEGIN IMMEDIATE` transaction, so concurrent writers (threads or processes)
serialise on the database and check-then-write is atomic: the same feedback sent twice records
one event and one vote.
"""

from __future__ import annotations

import json
import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from knowledge.records import FeedbackVote

_SCHEMA = """
CREATE TABLE IF NOT EXISTS events (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    at TEXT NOT NULL,
    incident_id TEXT NOT NULL,
    user TEXT NOT NULL,
    action TEXT NOT NULL CHECK (action IN ('set', 'retract')),
    label INTEGER,
    verdict_correct INTEGER,
    category TEXT,
    note TEXT NOT NULL DEFAULT '',
    source TEXT NOT NULL,
    lines TEXT NOT NULL DEFAULT '[]'
);
CREATE INDEX IF NOT EXISTS events_by_incident ON events (incident_id, seq);
CREATE TABLE IF NOT EXISTS votes (
    incident_id TEXT NOT NULL,
    user TEXT NOT NULL,
    label INTEGER NOT NULL,
    verdict_correct INTEGER NOT NULL,
    category TEXT,
    note TEXT NOT NULL,
    source TEXT NOT NULL,
    at TEXT NOT NULL,
    seq INTEGER NOT NULL,
    PRIMARY KEY (incident_id, user)
);
"""


@dataclass(frozen=True)
class FeedbackChange:
    """The outcome of one write: whether it changed anything, and the votes afterwards."""

    changed: bool
    seq: int | None
    votes: list[FeedbackVote]


@dataclass(frozen=True)
class FeedbackEvent:
    seq: int
    at: datetime
    incident_id: str
    user: str
    action: str
    label: int | None
    verdict_correct: bool | None
    category: str | None
    note: str
    source: str
    lines: list[str]


class FeedbackLog:
    """Append-only feedback events plus a table of current votes, in one SQLite file."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        # One connection per thread: sqlite3 connections must not be shared across threads.
        self._local = threading.local()
        self._conn().executescript(_SCHEMA)

    def _conn(self) -> sqlite3.Connection:
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            conn = sqlite3.connect(self.path, timeout=30.0, isolation_level=None)
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=FULL")
            self._local.conn = conn
        return conn

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        conn = self._conn()
        conn.execute("BEGIN IMMEDIATE")
        try:
            yield conn
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")

    def set_vote(self, vote: FeedbackVote, incident_id: str, lines: list[str]) -> FeedbackChange:
        """Record `vote` as this user's opinion of the incident; a repeat of the same vote is a no-op."""
        with self._transaction() as conn:
            row = conn.execute(
                "SELECT label, verdict_correct, category, note FROM votes WHERE incident_id=? AND user=?",
                (incident_id, vote.user),
            ).fetchone()
            if row == (vote.label, int(vote.verdict_correct), vote.category, vote.note):
                return FeedbackChange(False, None, self._votes(conn, incident_id))
            seq = self._append(conn, incident_id, vote.user, "set", vote, lines)
            conn.execute(
                "INSERT OR REPLACE INTO votes VALUES (?,?,?,?,?,?,?,?,?)",
                (
                    incident_id,
                    vote.user,
                    vote.label,
                    int(vote.verdict_correct),
                    vote.category,
                    vote.note,
                    vote.source,
                    vote.at.isoformat(),
                    seq,
                ),
            )
            return FeedbackChange(True, seq, self._votes(conn, incident_id))

    def retract(self, incident_id: str, user: str, source: str, at: datetime) -> FeedbackChange:
        """Remove this user's vote (a reaction was taken back); a no-op if they have none."""
        with self._transaction() as conn:
            deleted = conn.execute(
                "DELETE FROM votes WHERE incident_id=? AND user=?", (incident_id, user)
            ).rowcount
            if not deleted:
                return FeedbackChange(False, None, self._votes(conn, incident_id))
            seq = conn.execute(
                "INSERT INTO events (at, incident_id, user, action, source) VALUES (?,?,?,?,?)",
                (at.isoformat(), incident_id, user, "retract", source),
            ).lastrowid
            assert seq is not None
            return FeedbackChange(True, seq, self._votes(conn, incident_id))

    def votes(self, incident_id: str) -> list[FeedbackVote]:
        return self._votes(self._conn(), incident_id)

    def last_seq_by_incident(self) -> dict[str, int]:
        """The newest event per incident, for reconciling the Qdrant projection after a crash."""
        rows = self._conn().execute("SELECT incident_id, MAX(seq) FROM events GROUP BY incident_id")
        return {incident: seq for incident, seq in rows}

    def first_lines(self, incident_id: str) -> list[str]:
        """The lines sent with the incident's first event (to rebuild an incident lost in a crash)."""
        row = (
            self._conn()
            .execute(
                "SELECT lines FROM events WHERE incident_id=? AND lines != '[]' ORDER BY seq LIMIT 1",
                (incident_id,),
            )
            .fetchone()
        )
        return list(json.loads(row[0])) if row else []

    def events(self, since_seq: int = 0) -> Iterator[FeedbackEvent]:
        rows = self._conn().execute("SELECT * FROM events WHERE seq > ? ORDER BY seq", (since_seq,))
        for row in rows:
            yield FeedbackEvent(
                seq=row[0],
                at=datetime.fromisoformat(row[1]),
                incident_id=row[2],
                user=row[3],
                action=row[4],
                label=row[5],
                verdict_correct=None if row[6] is None else bool(row[6]),
                category=row[7],
                note=row[8],
                source=row[9],
                lines=json.loads(row[10]),
            )

    def close(self) -> None:
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            conn.close()
            self._local.conn = None

    @staticmethod
    def _append(
        conn: sqlite3.Connection,
        incident_id: str,
        user: str,
        action: str,
        vote: FeedbackVote,
        lines: list[str],
    ) -> int:
        seq = conn.execute(
            "INSERT INTO events (at, incident_id, user, action, label, verdict_correct, category, note,"
            " source, lines) VALUES (?,?,?,?,?,?,?,?,?,?)",
            (
                vote.at.isoformat(),
                incident_id,
                user,
                action,
                vote.label,
                int(vote.verdict_correct),
                vote.category,
                vote.note,
                vote.source,
                json.dumps(lines),
            ),
        ).lastrowid
        assert seq is not None
        return seq

    @staticmethod
    def _votes(conn: sqlite3.Connection, incident_id: str) -> list[FeedbackVote]:
        rows = conn.execute(
            "SELECT user, label, verdict_correct, category, note, source, at, seq FROM votes"
            " WHERE incident_id=? ORDER BY seq",
            (incident_id,),
        )
        return [
            FeedbackVote(
                user=user,
                label=label,
                verdict_correct=bool(correct),
                category=category,
                note=note,
                source=source,
                at=datetime.fromisoformat(at),
                seq=seq,
            )
            for user, label, correct, category, note, source, at, seq in rows
        ]
