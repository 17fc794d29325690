"""What the Slack app remembers between requests, in one SQLite file under the data dir.

- answers: each message the bot posted about an incident, by (channel, ts), with the incident id,
  the assistant thread and the Slack thread it sits in. A reaction or a button names only the
  message, so this is how feedback finds its incident.
- reactions: each user's feedback reactions on those messages, so several reactions, and their
  removal, resolve to the user's one current opinion.
- alert_threads: the message each alert group was posted as, so later notices update it in place.

It is persisted (not in memory) because reactions arrive hours after the answer, across restarts.
"""

from __future__ import annotations

import json
import sqlite3
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

_SCHEMA = """
CREATE TABLE IF NOT EXISTS answers (
    channel TEXT NOT NULL,
    ts TEXT NOT NULL,
    incident_id TEXT NOT NULL,
    thread_id TEXT NOT NULL,
    root_ts TEXT NOT NULL,
    PRIMARY KEY (channel, ts)
);
CREATE INDEX IF NOT EXISTS answers_root ON answers (channel, root_ts);
CREATE TABLE IF NOT EXISTS reactions (
    channel TEXT NOT NULL,
    ts TEXT NOT NULL,
    user TEXT NOT NULL,
    reaction TEXT NOT NULL,
    correct INTEGER NOT NULL,
    seq INTEGER NOT NULL,
    PRIMARY KEY (channel, ts, user, reaction)
);
CREATE TABLE IF NOT EXISTS alert_threads (
    group_key TEXT PRIMARY KEY,
    channel TEXT NOT NULL,
    ts TEXT NOT NULL,
    notice TEXT NOT NULL,
    alerts TEXT NOT NULL
);
"""


@dataclass(frozen=True)
class AnswerRef:
    """A bot message about an incident."""

    channel: str
    ts: str
    incident_id: str
    thread_id: str  # the assistant thread (thread memory) behind the message
    root_ts: str  # the Slack thread the message sits in (its own ts when it starts one)


@dataclass(frozen=True)
class AlertThread:
    channel: str
    ts: str
    notice: dict[str, Any]  # what the head shows, as IncidentNotice JSON
    alerts: dict[str, str]  # each alert of the group and its latest status


def default_thread_id(channel: str, root_ts: str) -> str:
    """The assistant thread of a Slack thread nobody has mapped yet."""
    return f"slack-{channel}-{root_ts}"


class SlackState:
    """Thread-safe: one connection behind a lock (Bolt runs listeners on a thread pool)."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._lock = threading.Lock()
        self._conn = sqlite3.connect(str(path), check_same_thread=False, isolation_level=None)
        self._conn.execute("PRAGMA journal_mode=WAL")
        self._conn.executescript(_SCHEMA)

    # -- answers and threads --

    def record_answer(self, ref: AnswerRef) -> None:
        with self._lock:
            self._conn.execute(
                "INSERT OR REPLACE INTO answers VALUES (?, ?, ?, ?, ?)",
                (ref.channel, ref.ts, ref.incident_id, ref.thread_id, ref.root_ts),
            )

    def answer(self, channel: str, ts: str) -> AnswerRef | None:
        with self._lock:
            row = self._conn.execute(
                "SELECT channel, ts, incident_id, thread_id, root_ts FROM answers WHERE channel=? AND ts=?",
                (channel, ts),
            ).fetchone()
        return AnswerRef(*row) if row else None

    def thread_id(self, channel: str, root_ts: str) -> str:
        """The assistant thread of a Slack thread: the one its answers were given in, else a new one."""
        with self._lock:
            row = self._conn.execute(
                "SELECT thread_id FROM answers WHERE channel=? AND (ts=? OR root_ts=?) "
                "ORDER BY rowid DESC LIMIT 1",
                (channel, root_ts, root_ts),
            ).fetchone()
        return str(row[0]) if row else default_thread_id(channel, root_ts)

    # -- feedback reactions --

    def add_reaction(self, channel: str, ts: str, user: str, reaction: str, correct: bool) -> None:
        with self._lock:
            (seq,) = self._conn.execute("SELECT COALESCE(MAX(seq), 0) + 1 FROM reactions").fetchone()
            self._conn.execute(
                "INSERT OR REPLACE INTO reactions VALUES (?, ?, ?, ?, ?, ?)",
                (channel, ts, user, reaction, int(correct), seq),
            )

    def remove_reaction(self, channel: str, ts: str, user: str, reaction: str) -> None:
        with self._lock:
            self._conn.execute(
                "DELETE FROM reactions WHERE channel=? AND ts=? AND user=? AND reaction=?",
                (channel, ts, user, reaction),
            )

    def reaction_opinion(self, channel: str, ts: str, user: str) -> bool | None:
        """The user's opinion by their latest remaining feedback reaction; None when none is left."""
        with self._lock:
            row = self._conn.execute(
                "SELECT correct FROM reactions WHERE channel=? AND ts=? AND user=? ORDER BY seq DESC LIMIT 1",
                (channel, ts, user),
            ).fetchone()
        return bool(row[0]) if row else None

    # -- alert threads --

    def alert_thread(self, group_key: str) -> AlertThread | None:
        with self._lock:
            row = self._conn.execute(
                "SELECT channel, ts, notice, alerts FROM alert_threads WHERE group_key=?", (group_key,)
            ).fetchone()
        return AlertThread(row[0], row[1], json.loads(row[2]), json.loads(row[3])) if row else None

    def save_alert_thread(self, group_key: str, thread: AlertThread) -> None:
        with self._lock:
            self._conn.execute(
                "INSERT OR REPLACE INTO alert_threads VALUES (?, ?, ?, ?, ?)",
                (group_key, thread.channel, thread.ts, json.dumps(thread.notice), json.dumps(thread.alerts)),
            )

    def close(self) -> None:
        with self._lock:
            self._conn.close()
