"""`QdrantClientBackend`: a Qdrant server or cluster through `qdrant-client`, or its local mode.

Server mode is how several processes (or machines) share one incident store; the server owns
durability and indexing, so `flush` and `optimize` are no-ops here and every write waits for the
server's acknowledgement (`wait=True`). Local mode (`QdrantClientBackend.local`) is qdrant-client's
pure-Python engine: exact search, one sqlite commit per point, fine for tests and small stores.

Errors from the client (HTTP statuses, connection failures, local-mode ValueError/KeyError) become
`BackendError`s that name the operation, the server URL or local path, and the collection; the API
key never appears in them.
"""

from __future__ import annotations

import math
import threading
import warnings
from collections.abc import Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, contextmanager, nullcontext
from pathlib import Path
from typing import Any

import httpx
import numpy as np
from qdrant_client import QdrantClient, models
from qdrant_client.common.client_exceptions import QdrantException
from qdrant_client.http.exceptions import ApiException, ResponseHandlingException, UnexpectedResponse

from knowledge.backend import (
    BackendError,
    FieldKind,
    Filters,
    Range,
    StoreLockedError,
    VectorHit,
    VectorPoint,
)
from knowledge.backend_edge import dimension_message, locked_message

_SCHEMA: dict[FieldKind, models.PayloadSchemaType] = {
    "keyword": models.PayloadSchemaType.KEYWORD,
    "integer": models.PayloadSchemaType.INTEGER,
    "float": models.PayloadSchemaType.FLOAT,
    "bool": models.PayloadSchemaType.BOOL,
}

# Errors the client raises for a failed operation: HTTP statuses and transport failures in server
# mode, ValueError/KeyError (bad vector, unknown point) in local mode.
_CLIENT_ERRORS = (ApiException, QdrantException, httpx.HTTPError, ValueError, KeyError)
_UPSERT_CHUNK = 512  # keeps each request well under the server's 32 MB body limit at 384 dims


def client_condition(key: str, value: object) -> models.FieldCondition:
    """One filter entry: scalar → match, list → match any, Range → range."""
    if isinstance(value, Range):
        return models.FieldCondition(key=key, range=models.Range(gte=value.gte, lte=value.lte))
    if isinstance(value, str | int):  # bool included: the client keeps it a bool
        return models.FieldCondition(key=key, match=models.MatchValue(value=value))
    if isinstance(value, Sequence):
        return models.FieldCondition(key=key, match=models.MatchAny(any=list(value)))
    raise TypeError(f"filter {key!r}: unsupported value {value!r}")


def client_filter(filters: Filters | None) -> models.Filter | None:
    if not filters:
        return None
    return models.Filter(must=[client_condition(key, value) for key, value in filters.items()])


class QdrantClientBackend:
    """One collection on a `QdrantClient` (server, cluster, or local mode)."""

    def __init__(
        self,
        client: QdrantClient,
        collection: str,
        *,
        shard_number: int | None = None,
        replication_factor: int | None = None,
        write_consistency_factor: int | None = None,
        on_disk_payload: bool = False,
        secret: str | None = None,
    ) -> None:
        """`secret` (the API key) is scrubbed from every error message, whatever echoes it."""
        self.client = client
        self.collection = collection
        self.shard_number = shard_number
        self.replication_factor = replication_factor
        self.write_consistency_factor = write_consistency_factor
        self.on_disk_payload = on_disk_payload
        self._secret = secret
        options = client.init_options
        self._local = bool(options.get("path")) or options.get("location") == ":memory:"
        self.where = str(options.get("path") or options.get("url") or options.get("location") or "?")
        # Local mode is plain Python over dicts and sqlite, not safe across threads: serialise it.
        self._local_lock = threading.RLock() if self._local else None

    @classmethod
    def server(
        cls,
        url: str,
        api_key: str | None,
        collection: str,
        *,
        shard_number: int | None = None,
        replication_factor: int | None = None,
        write_consistency_factor: int | None = None,
        on_disk_payload: bool = False,
        timeout: float = 10.0,
    ) -> QdrantClientBackend:
        """A Qdrant server or cluster over REST. Nothing is sent until the first operation."""
        client = QdrantClient(url=url, api_key=api_key, timeout=math.ceil(timeout), check_compatibility=False)
        return cls(
            client,
            collection,
            shard_number=shard_number,
            replication_factor=replication_factor,
            write_consistency_factor=write_consistency_factor,
            on_disk_payload=on_disk_payload,
            secret=api_key,
        )

    @classmethod
    def local(cls, path: Path | None, collection: str = "incidents") -> QdrantClientBackend:
        """qdrant-client's local mode in `path` (None: in memory). One process per folder."""
        if path is None:
            return cls(QdrantClient(location=":memory:"), collection)
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        try:
            # Threads are serialised by our own lock, so sqlite's same-thread check can go.
            client = QdrantClient(path=str(path), force_disable_check_same_thread=True)
        except RuntimeError as exc:
            if "already accessed" not in str(exc):
                raise
            raise StoreLockedError(locked_message(path, "another process or client")) from exc
        return cls(client, collection)

    @property
    def name(self) -> str:
        return "qdrant-local" if self._local else "qdrant-server"

    def _guard(self) -> AbstractContextManager[Any]:
        return self._local_lock if self._local_lock is not None else nullcontext()

    @contextmanager
    def _errors(self, operation: str) -> Iterator[None]:
        with self._guard():
            try:
                yield
            except _CLIENT_ERRORS as exc:
                raise BackendError(self._describe(operation, exc)) from exc

    def _describe(self, operation: str, exc: BaseException) -> str:
        if isinstance(exc, UnexpectedResponse):
            detail = f"HTTP {exc.status_code}: {exc.content[:300].decode(errors='replace')}"
        elif isinstance(exc, ResponseHandlingException):
            detail = f"{type(exc.source).__name__}: {exc.source}"
        else:
            detail = f"{type(exc).__name__}: {exc}"
        if self._secret:
            detail = detail.replace(self._secret, "***")
        return f"{self.name} {operation} on {self.where} (collection {self.collection!r}) failed: {detail}"

    # -- the VectorBackend protocol -----------------------------------------------------------

    def ensure_collection(self, dim: int, indexed_fields: Mapping[str, FieldKind]) -> None:
        with self._errors("ensure_collection"):
            if not self.client.collection_exists(self.collection):
                self._create(dim)
            stored = self._stored_dim()
            if stored != dim:
                where = f"collection {self.collection!r} on {self.where}"
                raise BackendError(dimension_message(where, stored, dim))
            if self._local:
                return  # local mode ignores payload indexes (and warns about each one)
            schema = self.client.get_collection(self.collection).payload_schema
            for field, kind in indexed_fields.items():
                present = schema.get(field)
                if present is not None and present.data_type == _SCHEMA[kind]:
                    continue
                self.client.create_payload_index(
                    self.collection, field, field_schema=_SCHEMA[kind], wait=True
                )

    def _create(self, dim: int) -> None:
        try:
            self.client.create_collection(
                self.collection,
                vectors_config=models.VectorParams(size=dim, distance=models.Distance.COSINE),
                shard_number=self.shard_number,
                replication_factor=self.replication_factor,
                write_consistency_factor=self.write_consistency_factor,
                on_disk_payload=self.on_disk_payload,
            )
        except UnexpectedResponse as exc:
            # Another process created it between our check and our create: that one wins.
            if exc.status_code != 409 and not self.client.collection_exists(self.collection):
                raise

    def _stored_dim(self) -> int:
        vectors = self.client.get_collection(self.collection).config.params.vectors
        if isinstance(vectors, models.VectorParams):
            return vectors.size
        raise BackendError(
            f"collection {self.collection!r} on {self.where} has named vectors {sorted(vectors or {})}; "
            "logtriage needs a collection with one unnamed vector: use another collection name"
        )

    def upsert(self, points: Sequence[VectorPoint]) -> None:
        for start in range(0, len(points), _UPSERT_CHUNK):
            chunk = points[start : start + _UPSERT_CHUNK]
            structs = [
                models.PointStruct(
                    id=p.id, vector=np.asarray(p.vector, dtype=np.float32).tolist(), payload=dict(p.payload)
                )
                for p in chunk
            ]
            with self._errors(f"upsert of {len(structs)} points"):
                self.client.upsert(self.collection, points=structs, wait=True)

    def set_payload(self, point_id: str, payload: Mapping[str, Any]) -> None:
        with self._errors(f"set_payload on {point_id}"):
            self.client.set_payload(self.collection, dict(payload), points=[point_id], wait=True)

    def search(self, vector: np.ndarray, k: int, filters: Filters | None = None) -> list[VectorHit]:
        with self._errors("search"):
            response = self.client.query_points(
                self.collection,
                query=np.asarray(vector, dtype=np.float32).tolist(),
                query_filter=client_filter(filters),
                limit=k,
                with_payload=True,
                with_vectors=False,
            )
        return [_hit(p.id, p.score, p.payload) for p in response.points]

    def search_batch(
        self, vectors: np.ndarray, k: int, filters: Filters | None = None
    ) -> list[list[VectorHit]]:
        if len(vectors) == 0:
            return []
        condition = client_filter(filters)
        requests = [
            models.QueryRequest(
                query=np.asarray(v, dtype=np.float32).tolist(),
                filter=condition,
                limit=k,
                with_payload=True,
                with_vector=False,
            )
            for v in vectors
        ]
        with self._errors(f"batch search of {len(requests)}"):
            responses = self.client.query_batch_points(self.collection, requests=requests)
        return [[_hit(p.id, p.score, p.payload) for p in r.points] for r in responses]

    def retrieve(self, ids: Sequence[str]) -> list[VectorHit]:
        if not ids:
            return []
        with self._errors(f"retrieve of {len(ids)} ids"):
            records = self.client.retrieve(
                self.collection, ids=list(ids), with_payload=True, with_vectors=False
            )
        return [_hit(r.id, 0.0, r.payload) for r in records]

    def scroll(self, batch_size: int = 256, filters: Filters | None = None) -> Iterator[VectorHit]:
        condition = client_filter(filters)
        offset: models.ExtendedPointId | None = None
        while True:
            with self._errors("scroll"):
                records, next_offset = self.client.scroll(
                    self.collection,
                    scroll_filter=condition,
                    limit=batch_size,
                    offset=offset,
                    with_payload=True,
                    with_vectors=False,
                )
            for r in records:
                yield _hit(r.id, 0.0, r.payload)
            if next_offset is None:
                return
            offset = next_offset

    def count(self, filters: Filters | None = None) -> int:
        with self._errors("count"):
            return self.client.count(self.collection, count_filter=client_filter(filters), exact=True).count

    def flush(self) -> None:
        """No-op: the server acknowledged each write (wait=True); local mode commits each point."""

    def optimize(self) -> None:
        """No-op: the server indexes in the background; local mode always searches exactly."""

    def drop_collection(self) -> None:
        """Delete the collection (test and benchmark clean-up on a shared server)."""
        with self._errors("drop_collection"):
            self.client.delete_collection(self.collection)

    def close(self) -> None:
        with self._guard(), warnings.catch_warnings():
            warnings.simplefilter("ignore")  # closing twice warns in some client versions
            self.client.close()

    def __enter__(self) -> QdrantClientBackend:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _hit(point_id: models.ExtendedPointId, score: float, payload: dict[str, Any] | None) -> VectorHit:
    return VectorHit(str(point_id), float(score), dict(payload or {}))
