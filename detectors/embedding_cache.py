"""One embedding per template: a bounded in-memory LRU, optionally backed by SQLite.

Real log streams repeat a few hundred templates millions of times, so after warm-up the
encoder (60-230 lines/s on a laptop CPU) is almost never called.
"""

from __future__ import annotations

import sqlite3
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from detectors.encoder import TextEncoder


@dataclass
class CacheStats:
    hits: int = 0
    misses: int = 0
    encoded: int = 0
    loaded_from_disk: int = 0


class TemplateEmbeddingCache:
    """Maps template text to its embedding, encoding only what it has not seen.

    `max_entries` bounds memory (384 float32 dims is 1.5 KB a template, so the default
    of 100k entries is about 150 MB at most). `persist_path`, when given, is a SQLite file
    that survives restarts; rows are keyed by the encoder's identity so a new encoder
    never reads another's vectors.
    """

    def __init__(
        self,
        encoder: TextEncoder,
        *,
        max_entries: int = 100_000,
        persist_path: str | Path | None = None,
    ) -> None:
        if max_entries < 1:
            raise ValueError("max_entries must be at least 1")
        self.encoder = encoder
        self.max_entries = max_entries
        self.stats = CacheStats()
        self._memory: OrderedDict[str, np.ndarray] = OrderedDict()
        self._db: sqlite3.Connection | None = None
        if persist_path is not None:
            Path(persist_path).parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(str(persist_path), check_same_thread=False)
            self._db.execute(
                "CREATE TABLE IF NOT EXISTS embeddings (encoder TEXT, template TEXT, vector BLOB, "
                "PRIMARY KEY (encoder, template))"
            )

    def __len__(self) -> int:
        return len(self._memory)

    def _remember(self, template: str, vector: np.ndarray) -> None:
        self._memory[template] = vector
        self._memory.move_to_end(template)
        while len(self._memory) > self.max_entries:
            self._memory.popitem(last=False)

    def _load_from_disk(self, templates: list[str]) -> dict[str, np.ndarray]:
        if self._db is None or not templates:
            return {}
        found: dict[str, np.ndarray] = {}
        # SQLite caps bound parameters; 500 per query stays well under every build's limit.
        for start in range(0, len(templates), 500):
            chunk = templates[start : start + 500]
            marks = ",".join("?" * len(chunk))
            rows = self._db.execute(
                f"SELECT template, vector FROM embeddings WHERE encoder = ? AND template IN ({marks})",
                [self.encoder.identity, *chunk],
            )
            for template, blob in rows:
                found[template] = np.frombuffer(blob, dtype=np.float32).copy()
        self.stats.loaded_from_disk += len(found)
        return found

    def _save_to_disk(self, vectors: dict[str, np.ndarray]) -> None:
        if self._db is None or not vectors:
            return
        with self._db:
            self._db.executemany(
                "INSERT OR REPLACE INTO embeddings VALUES (?, ?, ?)",
                [(self.encoder.identity, t, v.astype(np.float32).tobytes()) for t, v in vectors.items()],
            )

    def embed(self, templates: Sequence[str]) -> np.ndarray:
        """Return a (len(templates), dim) array, encoding each unseen template once."""
        found: dict[str, np.ndarray] = {}
        missing: list[str] = []
        for template in dict.fromkeys(templates):
            vector = self._memory.get(template)
            if vector is None:
                missing.append(template)
            else:
                found[template] = vector
                self._memory.move_to_end(template)  # recently used stays resident
        self.stats.hits += len(templates) - len(missing)
        self.stats.misses += len(missing)
        if missing:
            fetched = self._load_from_disk(missing)
            to_encode = [t for t in missing if t not in fetched]
            if to_encode:
                encoded = dict(zip(to_encode, self.encoder.encode(to_encode), strict=True))
                self.stats.encoded += len(to_encode)
                self._save_to_disk(encoded)
                fetched.update(encoded)
            for template, vector in fetched.items():
                self._remember(template, vector)
            # Built from `found`, not from memory: inserting may evict this batch's own templates.
            found.update(fetched)
        out = np.empty((len(templates), self.encoder.dim), dtype=np.float32)
        for i, template in enumerate(templates):
            out[i] = found[template]
        return out

    def close(self) -> None:
        if self._db is not None:
            self._db.close()
            self._db = None
