"""`EdgeBackend`: the Qdrant engine embedded in-process (qdrant-edge), the default store.

Layout of the folder it owns:

    <path>/logtriage.lock   flock held while open, holds the owner's pid
    <path>/backend.json     the collection's dimension, written before the shard is created
    <path>/shard/           the qdrant-edge shard (WAL + segments)

Durability (measured with a writer that is `kill -9`ed after each acknowledged write): the shard's
write-ahead log is enabled, and every `update()` that has returned is in the WAL's memory map, so
a crashed or killed process loses nothing once it is reopened. `flush()` msyncs the WAL and the
segments, which is what survives a power loss or kernel crash; it costs tens of milliseconds, so it
is skipped when nothing was written since the last one.

Threading: the shard is internally synchronised (a stress test of concurrent upserts, payload
updates, searches, scrolls and counts found no errors) and searches release the GIL, so reads run
unguarded; writes, flush and optimize are serialised by one lock so the "dirty" flag stays exact.
`optimize()` holds the GIL for its whole run (about 45 s at 100k points on 2 cores): every thread
of the process stalls meanwhile, which is why small collections stay below the indexing threshold.
"""

from __future__ import annotations

import fcntl
import json
import os
import threading
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import qdrant_edge as qe

from knowledge.backend import (
    BackendError,
    FieldKind,
    Filters,
    Range,
    StoreLockedError,
    VectorHit,
    VectorPoint,
)

LOCK_FILE = "logtriage.lock"
META_FILE = "backend.json"
SHARD_DIR = "shard"

_SCHEMA: dict[FieldKind, qe.PayloadSchemaType] = {
    "keyword": qe.PayloadSchemaType.Keyword,
    "integer": qe.PayloadSchemaType.Integer,
    "float": qe.PayloadSchemaType.Float,
    "bool": qe.PayloadSchemaType.Bool,
}


def index_params(kind: FieldKind) -> qe.PayloadSchemaParams:
    """Payload indexes without their own HNSW links.

    Links give each value matching more than `filter_scan_below_points` points an extra graph;
    at 100k they made optimize 40% slower (64 s against 46 s) and did not improve broad filters,
    which the main graph serves. Narrow filters are scanned exactly through the index anyway.
    """
    if kind == "keyword":
        return qe.KeywordIndexParams(enable_hnsw=False)
    if kind == "integer":
        return qe.IntegerIndexParams(lookup=True, range=True, enable_hnsw=False)
    if kind == "float":
        return qe.FloatIndexParams(enable_hnsw=False)
    return qe.BoolIndexParams(enable_hnsw=False)


def locked_message(path: Path, holder: str) -> str:
    """The one message users see when an embedded store's folder is taken; it names the fixes."""
    return (
        f"the incident store in {path} is already open in {holder}; an embedded store serves one "
        "process at a time. Talk to the running `logtriage serve` (its HTTP API) instead, or set "
        "LOGTRIAGE_QDRANT_URL to a Qdrant server (or use another --data-dir)."
    )


def dimension_message(where: str, stored: int, wanted: int) -> str:
    return (
        f"{where} holds {stored}-dimensional vectors but the embedder makes {wanted}-dimensional ones; "
        "vectors of different spaces cannot be mixed. Re-index into a new data dir (--data-dir) "
        "or a new collection, or use the embedder the store was built with."
    )


def edge_condition(key: str, value: object) -> qe.FieldCondition:
    """One filter entry as a qdrant-edge condition: scalar → match, list → any, Range → range."""
    if isinstance(value, Range):
        return qe.FieldCondition(key=key, range=qe.RangeFloat(gte=value.gte, lte=value.lte))
    if isinstance(value, bool):
        # qdrant-edge 0.9 reads a Python bool as the integer 0/1, which never matches a stored
        # bool; numpy.bool_ has no __index__, so it reaches the engine as a real bool.
        return qe.FieldCondition(key=key, match=qe.MatchValue(np.bool_(value)))  # type: ignore[arg-type]
    if isinstance(value, str | int):
        return qe.FieldCondition(key=key, match=qe.MatchValue(value))
    if isinstance(value, Sequence):
        return qe.FieldCondition(key=key, match=qe.MatchAny(list(value)))
    raise TypeError(f"filter {key!r}: unsupported value {value!r}")


def edge_filter(filters: Filters | None) -> qe.Filter | None:
    if not filters:
        return None
    return qe.Filter(must=[edge_condition(key, value) for key, value in filters.items()])


class EdgeBackend:
    """The Qdrant engine in-process, one shard in `path`; one process per folder."""

    def __init__(
        self,
        path: Path,
        *,
        hnsw_m: int = 16,
        ef_construct: int = 100,
        hnsw_ef: int | None = 200,
        exact_below_points: int = 10_000,
        filter_scan_below_points: int = 30_000,
        quantize: bool = True,
        max_search_threads: int | None = None,
    ) -> None:
        """Open (and lock) the store folder; the shard is loaded if it exists.

        Figures below are from benchmarks/knowledge_bench.py and its experiments (random unit
        384-d vectors, 100k points, 2 shared cores).
        `exact_below_points`: segments smaller than this stay unindexed and are searched exactly
        (about 1 ms at 10k), so small stores never need `optimize()`, whose HNSW build holds the
        GIL and so freezes the process. `filter_scan_below_points`: a filter matching fewer points
        is answered by scanning them through the payload index, exactly; without that, HNSW with
        a filter matching 1/8 of 100k points found a near-duplicate of its query 21% of the time.
        `quantize`: indexed segments search an int8 copy of the vectors (in RAM) and rescore with
        the floats; it cut the HNSW build about 3x and search time about 2x at equal recall.
        `hnsw_ef`: the search beam; 100 missed 4% of near-duplicate queries at 100k, 200 none, for
        +0.3 ms. The creation settings are fixed when the shard is created.
        """
        self.path = Path(path)
        self.hnsw_m = hnsw_m
        self.ef_construct = ef_construct
        self.exact_below_points = exact_below_points
        self.filter_scan_below_points = filter_scan_below_points
        self.quantize = quantize
        self.max_search_threads = max_search_threads
        # Rescore twice as many int8 candidates as asked with the float vectors.
        rescoring = qe.QuantizationSearchParams(rescore=True, oversampling=2.0) if quantize else None
        self._params = qe.SearchParams(hnsw_ef=hnsw_ef, quantization=rescoring)
        self._write_lock = threading.Lock()
        self._dirty = False
        self._shard: qe.EdgeShard | None = None
        self._lock_fd = self._take_folder_lock()
        try:
            if (self._shard_path / "edge_config.json").is_file():
                with self._engine_errors("load"):
                    self._shard = qe.EdgeShard.load(str(self._shard_path), self._runtime_config())
        except BaseException:
            self._release_folder_lock()
            raise

    @property
    def name(self) -> str:
        return "edge"

    @property
    def _shard_path(self) -> Path:
        return self.path / SHARD_DIR

    # -- opening, locking ---------------------------------------------------------------------

    def _take_folder_lock(self) -> int:
        """An exclusive flock on the folder's lock file, with our pid in it for the error message.

        flock is per open file description, so a second open in this same process conflicts too.
        The kernel drops it when the process dies, so a killed server never leaves a stale lock.
        """
        self.path.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 64, 0).decode(errors="replace").strip()
            os.close(fd)
            who = "this process" if holder == str(os.getpid()) else f"another process (pid {holder or '?'})"
            raise StoreLockedError(locked_message(self.path, who)) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        return fd

    def _release_folder_lock(self) -> None:
        if self._lock_fd >= 0:
            os.close(self._lock_fd)  # closing the only descriptor releases the flock
            self._lock_fd = -1

    @contextmanager
    def _engine_errors(self, operation: str) -> Iterator[None]:
        """qdrant-edge raises bare `Exception` for engine errors; map them to our types here."""
        try:
            yield
        except (BackendError, StoreLockedError):
            raise
        except Exception as exc:  # the boundary: qdrant-edge has no exception hierarchy
            text = str(exc)
            if "WouldBlock" in text:  # the engine's own WAL lock, held by a non-logtriage process
                raise StoreLockedError(locked_message(self.path, "another process")) from exc
            raise BackendError(f"qdrant-edge {operation} in {self.path} failed: {text}") from exc

    def _runtime_config(self) -> qe.EdgeConfig | None:
        """Settings that may change between opens without touching the stored data."""
        if self.max_search_threads is None:
            return None
        dim = self._stored_dim()
        if dim is None:
            return None
        return qe.EdgeConfig(vectors=self._vector_params(dim), max_search_threads=self.max_search_threads)

    def _vector_params(self, dim: int) -> qe.EdgeVectorParams:
        return qe.EdgeVectorParams(size=dim, distance=qe.Distance.Cosine)

    def _create_config(self, dim: int) -> qe.EdgeConfig:
        # Both thresholds are in KB of float32 vectors; the constructor takes them in points.
        index_kb = max(1, self.exact_below_points * dim * 4 // 1024)
        scan_kb = max(1, self.filter_scan_below_points * dim * 4 // 1024)
        return qe.EdgeConfig(
            vectors=self._vector_params(dim),
            hnsw_config=qe.HnswIndexConfig(
                m=self.hnsw_m, ef_construct=self.ef_construct, full_scan_threshold=scan_kb
            ),
            optimizers=qe.EdgeOptimizersConfig(indexing_threshold=index_kb),
            quantization_config=(
                qe.ScalarQuantizationConfig(type=qe.ScalarType.Int8, quantile=0.99, memory=qe.Memory.Pinned)
                if self.quantize
                else None
            ),
            max_search_threads=self.max_search_threads,
            wal_enabled=True,
        )

    def _stored_dim(self) -> int | None:
        meta = self.path / META_FILE
        return int(json.loads(meta.read_text())["dim"]) if meta.is_file() else None

    def _write_meta(self, dim: int) -> None:
        tmp = self.path / f"{META_FILE}.tmp"
        with open(tmp, "w") as f:
            json.dump({"dim": dim, "distance": "cosine", "engine": "qdrant-edge"}, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, self.path / META_FILE)

    # -- the VectorBackend protocol -----------------------------------------------------------

    def ensure_collection(self, dim: int, indexed_fields: Mapping[str, FieldKind]) -> None:
        with self._write_lock:
            if self._shard is None:
                # The dimension is recorded first: a crash before the shard exists leaves a
                # meta file that the next ensure_collection simply rewrites.
                self._write_meta(dim)
                with self._engine_errors("create"):
                    self._shard = qe.EdgeShard.create(str(self._shard_path), self._create_config(dim))
            else:
                stored = self._stored_dim()
                if stored is not None and stored != dim:
                    raise BackendError(dimension_message(f"the store in {self.path}", stored, dim))
            self._ensure_indexes(indexed_fields)

    def _ensure_indexes(self, indexed_fields: Mapping[str, FieldKind]) -> None:
        shard = self._require()
        with self._engine_errors("create payload indexes"):
            existing = {name: info.data_type for name, info in shard.info().payload_schema.items()}
            for name, kind in indexed_fields.items():
                schema = _SCHEMA[kind]
                if existing.get(name) == schema:
                    continue
                if name in existing:
                    shard.update(qe.UpdateOperation.delete_field_index(name))
                shard.update(qe.UpdateOperation.create_field_index(name, index_params(kind)))
                self._dirty = True

    def _require(self) -> qe.EdgeShard:
        if self._shard is None:
            if self._lock_fd < 0:
                raise BackendError(f"the store in {self.path} is closed")
            raise BackendError(f"the store in {self.path} has no collection yet: call ensure_collection")
        return self._shard

    def upsert(self, points: Sequence[VectorPoint]) -> None:
        if not points:
            return
        batch = [
            qe.Point(p.id, np.asarray(p.vector, dtype=np.float32).tolist(), dict(p.payload)) for p in points
        ]
        with self._write_lock, self._engine_errors(f"upsert of {len(batch)} points"):
            self._require().update(qe.UpdateOperation.upsert_points(batch))
            self._dirty = True

    def set_payload(self, point_id: str, payload: Mapping[str, Any]) -> None:
        with self._write_lock, self._engine_errors(f"set_payload on {point_id}"):
            self._require().update(qe.UpdateOperation.set_payload([point_id], dict(payload)))
            self._dirty = True

    def _request(self, vector: np.ndarray, k: int, filters: Filters | None) -> qe.QueryRequest:
        return qe.QueryRequest(
            limit=k,
            query=qe.Query.Nearest(np.asarray(vector, dtype=np.float32).tolist()),
            filter=edge_filter(filters),
            with_payload=True,
            with_vector=False,
            params=self._params,
        )

    def search(self, vector: np.ndarray, k: int, filters: Filters | None = None) -> list[VectorHit]:
        request = self._request(vector, k, filters)
        with self._engine_errors("search"):
            scored = self._require().query(request)
        return [_hit(p.id, p.score, p.payload) for p in scored]

    def search_batch(
        self, vectors: np.ndarray, k: int, filters: Filters | None = None
    ) -> list[list[VectorHit]]:
        if len(vectors) == 0:
            return []
        batch = qe.QueryBatchRequest([self._request(v, k, filters) for v in vectors])
        with self._engine_errors(f"batch search of {len(vectors)}"):
            results = self._require().query_batch(batch)
        return [[_hit(p.id, p.score, p.payload) for p in scored] for scored in results]

    def retrieve(self, ids: Sequence[str]) -> list[VectorHit]:
        if not ids:
            return []
        with self._engine_errors(f"retrieve of {len(ids)} ids"):
            records = self._require().retrieve(list(ids), with_payload=True, with_vector=False)
        return [_hit(r.id, 0.0, r.payload) for r in records]

    def scroll(self, batch_size: int = 256, filters: Filters | None = None) -> Iterator[VectorHit]:
        condition = edge_filter(filters)
        offset: qe.PointId | None = None
        while True:
            request = qe.ScrollRequest(
                offset=offset, limit=batch_size, filter=condition, with_payload=True, with_vector=False
            )
            with self._engine_errors("scroll"):
                records, offset = self._require().scroll(request)
            for r in records:
                yield _hit(r.id, 0.0, r.payload)
            if offset is None:
                return

    def count(self, filters: Filters | None = None) -> int:
        with self._engine_errors("count"):
            return self._require().count(qe.CountRequest(exact=True, filter=edge_filter(filters)))

    def flush(self) -> None:
        """msync the WAL and segments; skipped when nothing was written since the last flush."""
        with self._write_lock:
            if self._shard is None or not self._dirty:
                return
            with self._engine_errors("flush"):
                self._shard.flush()
            self._dirty = False

    def optimize(self) -> None:
        """Build HNSW for segments past `exact_below_points`; a no-op below it or when done."""
        with self._write_lock:
            if self._shard is None:
                return
            with self._engine_errors("optimize"):
                if self._shard.optimize():
                    self._dirty = True

    def close(self) -> None:
        with self._write_lock:
            try:
                if self._shard is not None:
                    with self._engine_errors("close"):
                        if self._dirty:
                            self._shard.flush()
                        self._shard.close()
            finally:
                self._shard = None
                self._dirty = False
                self._release_folder_lock()

    def __enter__(self) -> EdgeBackend:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _hit(point_id: qe.PointId, score: float, payload: dict[str, Any] | None) -> VectorHit:
    # The engine hands ids back as uuid.UUID; the protocol speaks strings.
    return VectorHit(str(point_id), float(score), dict(payload or {}))
