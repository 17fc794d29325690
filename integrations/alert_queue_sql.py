"""The alert queue's SQLite schema and statements (see alert_queue.py)."""

SCHEMA = """
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
GROUP_IS_FREE = """(j.group_key IS NULL OR NOT EXISTS (
    SELECT 1 FROM jobs e WHERE e.group_key = j.group_key AND e.seq < j.seq
    AND e.status IN ('pending', 'in_progress')))"""
NEXT_PENDING = f"""SELECT j.seq FROM jobs j WHERE j.status = 'pending' AND j.available_at <= :now
    AND {GROUP_IS_FREE} ORDER BY j.seq LIMIT 1"""
# A running job whose lease ran out belongs to a worker that hung; another worker may take it over.
NEXT_EXPIRED = """SELECT j.seq FROM jobs j WHERE j.status = 'in_progress' AND j.lease_expires_at <= :now
    ORDER BY j.seq LIMIT 1"""
NEXT_CLAIMABLE = (
    f"SELECT MIN(seq) FROM (SELECT * FROM ({NEXT_PENDING}) UNION ALL SELECT * FROM ({NEXT_EXPIRED}))"
)
# One statement, so the write lock is held for as short a time as possible.
CLAIM = f"""UPDATE jobs SET status = 'in_progress', worker = :worker, attempts = attempts + 1,
    started_at = :now, lease_expires_at = :expires WHERE seq = ({NEXT_CLAIMABLE}) RETURNING *"""
# The pending count, then the latest job of each given dedupe key within the window (latest last).
ENQUEUE_LOOK = """SELECT 0, 0, NULL, COUNT(*) FROM jobs WHERE status = 'pending'
    UNION ALL SELECT 1, seq, dedupe_key, id FROM jobs
    WHERE dedupe_key IN (SELECT value FROM json_each(?)) AND enqueued_at > ? ORDER BY 1, 2"""
INSERT = """INSERT INTO jobs (id, kind, status, payload, dedupe_key, group_key, enqueued_at, available_at)
    VALUES (?, ?, 'pending', ?, ?, ?, ?, ?)"""
FINISH = """UPDATE jobs SET status = ?, result = COALESCE(?, result), error = COALESCE(?, error),
    finished_at = ?, available_at = COALESCE(?, available_at), lease_expires_at = NULL
    WHERE id = ? AND status = 'in_progress' RETURNING *"""
SET_GROUP_INCIDENT = """INSERT INTO group_incidents VALUES (?, ?, ?) ON CONFLICT (group_key)
    DO UPDATE SET incident_id = excluded.incident_id, updated_at = excluded.updated_at"""
