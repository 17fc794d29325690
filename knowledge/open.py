"""Opening an `IncidentStore` on the embedded engine or a Qdrant server, from explicit arguments.

Entry points translate settings into these arguments; library code never reads the environment.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from knowledge.backend import VectorBackend
from knowledge.backend_client import QdrantClientBackend
from knowledge.backend_edge import EdgeBackend
from knowledge.embedding import SequenceEmbedder
from knowledge.feedback_log import FeedbackLog
from knowledge.store import IncidentStore

EmbeddedEngine = Literal["edge", "qdrant-local"]


@dataclass(frozen=True)
class StoreLocation:
    """Where incidents live. With `qdrant_url` set, the server; else the embedded engine."""

    data_dir: Path
    collection: str = "incidents"
    engine: EmbeddedEngine = "edge"
    qdrant_url: str | None = None
    qdrant_api_key: str | None = None
    shard_number: int | None = None
    replication_factor: int | None = None
    write_consistency_factor: int | None = None
    timeout_s: float = 10.0

    @property
    def root(self) -> Path:
        return self.data_dir / "incidents"

    @property
    def feedback_log_path(self) -> Path:
        # Per collection, so a server collection and the embedded one never share an audit log.
        where = "server" if self.qdrant_url else self.engine
        return self.root / f"feedback-{where}-{self.collection}.sqlite"

    def describe(self) -> str:
        if self.qdrant_url:
            return f"Qdrant server {self.qdrant_url}, collection {self.collection}"
        return f"embedded {self.engine} store in {self.root / self.engine / self.collection}"


def open_backend(location: StoreLocation) -> VectorBackend:
    if location.qdrant_url:
        return QdrantClientBackend.server(
            location.qdrant_url,
            location.qdrant_api_key,
            location.collection,
            shard_number=location.shard_number,
            replication_factor=location.replication_factor,
            write_consistency_factor=location.write_consistency_factor,
            timeout=location.timeout_s,
        )
    path = location.root / location.engine / location.collection
    if location.engine == "edge":
        return EdgeBackend(path)
    return QdrantClientBackend.local(path, location.collection)


def open_store(location: StoreLocation, embedder: SequenceEmbedder) -> IncidentStore:
    """Open (creating if needed) the incident store. Raises StoreLockedError if another process holds it."""
    backend = open_backend(location)
    try:
        return IncidentStore(backend, embedder, FeedbackLog(location.feedback_log_path))
    except BaseException:
        backend.close()
        raise
