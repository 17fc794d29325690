"""The narrow interface every vector engine behind `IncidentStore` implements.

Two engines ship: `EdgeBackend` (the Qdrant engine embedded in-process, the default) and
`QdrantClientBackend` (a Qdrant server or cluster through `qdrant-client`, or its local mode).
The store only ever talks to this Protocol, and one conformance suite runs against each engine.

Ids are UUID strings. Vectors are compared by cosine similarity, so scores are in [-1, 1].
Filters are equality matches on payload keys: a scalar matches that value, a list matches any of
its values, and a `Range` bounds a number (timestamps are stored as epoch seconds).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

import numpy as np

FieldKind = Literal["keyword", "integer", "float", "bool"]


@dataclass(frozen=True)
class Range:
    """Bounds on a numeric payload field; either side may be open."""

    gte: float | None = None
    lte: float | None = None


FilterValue = str | int | bool | Sequence[str] | Sequence[int] | Range
Filters = Mapping[str, FilterValue]


@dataclass(frozen=True)
class VectorPoint:
    id: str
    vector: np.ndarray  # (dim,) float32
    payload: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class VectorHit:
    id: str
    score: float  # cosine similarity; 0.0 for records fetched by id
    payload: dict[str, Any]


class StoreLockedError(RuntimeError):
    """The embedded store's folder is held by another process. The message names the fixes."""


class BackendError(RuntimeError):
    """The engine refused or failed an operation; the message names the operation and its target."""


class VectorBackend(Protocol):
    """What `IncidentStore` needs from a vector engine, and nothing more."""

    @property
    def name(self) -> str:
        """A short engine name for messages and benchmarks: 'edge', 'qdrant-local', 'qdrant-server'."""
        ...

    def ensure_collection(self, dim: int, indexed_fields: Mapping[str, FieldKind]) -> None:
        """Create the collection (cosine, `dim` wide) and payload indexes if missing.

        Raises BackendError if it exists with another dimension (the message says to re-index).
        """
        ...

    def upsert(self, points: Sequence[VectorPoint]) -> None:
        """Insert or replace whole points (vector and payload)."""
        ...

    def set_payload(self, point_id: str, payload: Mapping[str, Any]) -> None:
        """Merge `payload` keys into an existing point's payload; other keys are kept."""
        ...

    def search(self, vector: np.ndarray, k: int, filters: Filters | None = None) -> list[VectorHit]:
        """The `k` most similar points, best first, with their payloads."""
        ...

    def search_batch(
        self, vectors: np.ndarray, k: int, filters: Filters | None = None
    ) -> list[list[VectorHit]]:
        """`search` for each row of `vectors` (N, dim), in one call where the engine allows."""
        ...

    def retrieve(self, ids: Sequence[str]) -> list[VectorHit]:
        """The points with these ids that exist (score 0.0), in no particular order."""
        ...

    def scroll(self, batch_size: int = 256, filters: Filters | None = None) -> Iterator[VectorHit]:
        """Every point (matching `filters`), payload only, in batches under the hood."""
        ...

    def count(self, filters: Filters | None = None) -> int: ...

    def flush(self) -> None:
        """Make every write that has returned durable on disk (no-op where the engine already is)."""
        ...

    def optimize(self) -> None:
        """Build indexes after a bulk import so searches are fast (no-op where the engine does it itself)."""
        ...

    def close(self) -> None:
        """Release files and locks; the backend is unusable afterwards."""
        ...
