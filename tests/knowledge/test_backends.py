"""One conformance suite for every vector engine behind `IncidentStore`.

`edge` and `qdrant-local` always run; `qdrant-server` runs when LOGTRIAGE_QDRANT_URL names a
server (with LOGTRIAGE_QDRANT_API_KEY if it needs one), each test in its own collection.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import uuid
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from knowledge.backend import (
    BackendError,
    FieldKind,
    Filters,
    Range,
    StoreLockedError,
    VectorBackend,
    VectorHit,
    VectorPoint,
)
from knowledge.backend_client import QdrantClientBackend
from knowledge.backend_edge import EdgeBackend
from tests.conftest import QDRANT_SERVER_API_KEY, QDRANT_SERVER_URL

REPO_ROOT = Path(__file__).resolve().parents[2]
DIM = 16
FIELDS: dict[str, FieldKind] = {
    "service": "keyword",
    "severity": "integer",
    "ts": "float",
    "resolved": "bool",
}
ENGINES = ["edge", "qdrant-local", "qdrant-server"]
FIXES = ("logtriage serve", "LOGTRIAGE_QDRANT_URL", "--data-dir")
# Child processes import the package from this checkout.
CHILD: dict[str, Any] = {"cwd": REPO_ROOT, "env": {**os.environ, "PYTHONPATH": str(REPO_ROOT)}}


def unit(*weights: float) -> np.ndarray:
    v = np.zeros(DIM, dtype=np.float32)
    v[: len(weights)] = weights
    return v / np.linalg.norm(v)


def random_unit(rng: np.random.Generator) -> np.ndarray:
    v = rng.standard_normal(DIM).astype(np.float32)
    return v / np.linalg.norm(v)


def point(vector: np.ndarray, **payload: object) -> VectorPoint:
    return VectorPoint(str(uuid.uuid4()), vector, dict(payload))


def open_engine(engine: str, tmp_path: Path) -> VectorBackend:
    if engine == "edge":
        return EdgeBackend(tmp_path / "edge")
    if engine == "qdrant-local":
        return QdrantClientBackend.local(None)
    if not QDRANT_SERVER_URL:
        pytest.skip("set LOGTRIAGE_QDRANT_URL (and LOGTRIAGE_QDRANT_API_KEY) to run against a Qdrant server")
    collection = f"logtriage-test-{uuid.uuid4().hex[:12]}"
    return QdrantClientBackend.server(QDRANT_SERVER_URL, QDRANT_SERVER_API_KEY, collection)


@pytest.fixture(params=ENGINES)
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[VectorBackend]:
    opened = open_engine(str(request.param), tmp_path)
    opened.ensure_collection(DIM, FIELDS)
    yield opened
    if isinstance(opened, QdrantClientBackend) and opened.name == "qdrant-server":
        opened.drop_collection()
    opened.close()


@pytest.fixture
def incidents(backend: VectorBackend) -> list[VectorPoint]:
    """Six points: two services, severities 1-3, timestamps 100-600, every other one resolved."""
    points = [
        point(
            unit(1.0, 0.1 * i),
            service="api" if i % 2 == 0 else "db",
            severity=1 + i % 3,
            ts=100.0 * (i + 1),
            resolved=i % 2 == 1,
            tags=[f"t{i}", "common"],
        )
        for i in range(6)
    ]
    backend.upsert(points)
    return points


def ids_of(hits: Iterable[VectorHit]) -> set[str]:
    return {h.id for h in hits}


# -- searching -------------------------------------------------------------------------------------


def test_search_returns_the_nearest_points_best_first_with_cosine_scores(backend: VectorBackend) -> None:
    same, diagonal, orthogonal = point(unit(1, 0)), point(unit(1, 1), note="d"), point(unit(0, 1))
    backend.upsert([orthogonal, same, diagonal])
    hits = backend.search(unit(1, 0), k=3)
    assert [h.id for h in hits] == [same.id, diagonal.id, orthogonal.id]
    assert [h.score for h in hits] == pytest.approx([1.0, 2**-0.5, 0.0], abs=1e-5)
    assert hits[1].payload == {"note": "d"}
    assert [h.id for h in backend.search(unit(1, 0), k=2)] == [same.id, diagonal.id]


def test_search_batch_answers_each_query_in_its_own_row(backend: VectorBackend) -> None:
    x, y = point(unit(1, 0)), point(unit(0, 1))
    backend.upsert([x, y])
    rows = backend.search_batch(np.stack([unit(0, 1), unit(1, 0), unit(0, 1)]), k=1)
    assert [[h.id for h in row] for row in rows] == [[y.id], [x.id], [y.id]]
    assert backend.search_batch(np.zeros((0, DIM), dtype=np.float32), k=1) == []


def test_search_batch_applies_the_filter_to_every_query(
    backend: VectorBackend, incidents: list[VectorPoint]
) -> None:
    rows = backend.search_batch(np.stack([unit(1.0), unit(0, 1)]), k=10, filters={"service": "db"})
    for row in rows:
        assert {h.payload["service"] for h in row} == {"db"} and len(row) == 3


# -- filters ---------------------------------------------------------------------------------------


def test_a_scalar_filter_matches_equal_keyword_integer_and_bool_values(
    backend: VectorBackend, incidents: list[VectorPoint]
) -> None:
    assert ids_of(backend.search(unit(1.0), 10, {"service": "api"})) == {p.id for p in incidents[0::2]}
    assert backend.count({"severity": 2}) == 2
    assert ids_of(backend.search(unit(1.0), 10, {"resolved": True})) == {p.id for p in incidents[1::2]}
    assert backend.count({"resolved": False}) == 3


def test_a_list_filter_matches_any_of_its_values(
    backend: VectorBackend, incidents: list[VectorPoint]
) -> None:
    assert backend.count({"severity": [1, 3]}) == 4
    assert ids_of(backend.search(unit(1.0), 10, {"tags": ["t0", "t5"]})) == {incidents[0].id, incidents[5].id}
    assert backend.count({"tags": ["common"]}) == 6


def test_a_range_filter_bounds_a_number_on_either_or_both_sides(
    backend: VectorBackend, incidents: list[VectorPoint]
) -> None:
    assert backend.count({"ts": Range(gte=300.0)}) == 4
    assert backend.count({"ts": Range(lte=200.0)}) == 2
    assert ids_of(backend.search(unit(1.0), 10, {"ts": Range(gte=200.0, lte=300.0)})) == {
        incidents[1].id,
        incidents[2].id,
    }


def test_several_filter_keys_must_all_match(backend: VectorBackend, incidents: list[VectorPoint]) -> None:
    filters: Filters = {"service": "api", "ts": Range(gte=250.0), "tags": ["t2", "t3", "t4"]}
    assert ids_of(backend.search(unit(1.0), 10, filters)) == {incidents[2].id, incidents[4].id}
    assert backend.count(filters) == 2
    assert ids_of(backend.scroll(filters=filters)) == {incidents[2].id, incidents[4].id}


def test_no_filter_and_an_empty_filter_both_match_everything(
    backend: VectorBackend, incidents: list[VectorPoint]
) -> None:
    assert backend.count() == backend.count({}) == 6


# -- payloads, ids, scrolling ----------------------------------------------------------------------


def test_set_payload_merges_keys_and_keeps_the_others(
    backend: VectorBackend, incidents: list[VectorPoint]
) -> None:
    target = incidents[0]
    backend.set_payload(target.id, {"resolved": True, "note": "fixed by restart"})
    (hit,) = backend.retrieve([target.id])
    assert hit.payload == {**target.payload, "resolved": True, "note": "fixed by restart"}
    assert backend.count({"resolved": True}) == 4  # the payload index follows the change


def test_set_payload_on_a_missing_point_is_an_error(backend: VectorBackend) -> None:
    with pytest.raises(BackendError, match="set_payload"):
        backend.set_payload(str(uuid.uuid4()), {"x": 1})


def test_retrieve_returns_existing_points_with_score_zero_and_skips_unknown_ids(
    backend: VectorBackend, incidents: list[VectorPoint]
) -> None:
    wanted = [incidents[1].id, str(uuid.uuid4()), incidents[3].id]
    hits = backend.retrieve(wanted)
    assert ids_of(hits) == {incidents[1].id, incidents[3].id}
    assert all(h.score == 0.0 for h in hits)
    assert {h.id: h.payload for h in hits}[incidents[3].id] == incidents[3].payload
    assert backend.retrieve([]) == []


def test_scroll_visits_every_point_once_across_many_batches(backend: VectorBackend) -> None:
    rng = np.random.default_rng(0)
    points = [point(random_unit(rng), n=i, service="api" if i % 3 else "db") for i in range(70)]
    backend.upsert(points)
    seen = [h.id for h in backend.scroll(batch_size=16)]
    assert sorted(seen) == sorted(p.id for p in points)
    assert len(list(backend.scroll(batch_size=7, filters={"service": "db"}))) == 24


def test_count_counts_every_point_or_the_matching_ones(
    backend: VectorBackend, incidents: list[VectorPoint]
) -> None:
    assert backend.count() == 6
    assert backend.count({"service": "db"}) == 3


def test_upserting_an_existing_id_replaces_the_point_instead_of_adding_one(
    backend: VectorBackend, incidents: list[VectorPoint]
) -> None:
    old = incidents[0]
    backend.upsert([VectorPoint(old.id, unit(0, 0, 1), {"service": "web"})])
    assert backend.count() == 6
    (hit,) = backend.retrieve([old.id])
    assert hit.payload == {"service": "web"}
    assert backend.search(unit(0, 0, 1), k=1)[0].id == old.id


def test_concurrent_writers_and_readers_lose_nothing(backend: VectorBackend) -> None:
    rng = np.random.default_rng(1)
    batches = [[point(random_unit(rng), service="api") for _ in range(20)] for _ in range(8)]
    errors: list[BaseException] = []

    def work(batch: list[VectorPoint]) -> None:
        try:
            backend.upsert(batch)
            backend.set_payload(batch[0].id, {"first": True})
            backend.search(batch[1].vector, k=3, filters={"service": "api"})
            backend.count()
        except BaseException as exc:  # collected so the main thread can fail the test
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(b,)) for b in batches]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert backend.count() == 160 and backend.count({"first": True}) == 8


# -- collections -----------------------------------------------------------------------------------


def test_ensure_collection_again_with_the_same_dimension_keeps_the_points(
    backend: VectorBackend, incidents: list[VectorPoint]
) -> None:
    backend.ensure_collection(DIM, FIELDS)
    assert backend.count() == 6 and backend.name in ENGINES


def test_ensure_collection_with_another_dimension_says_to_re_index(backend: VectorBackend) -> None:
    with pytest.raises(BackendError, match=r"(?i)re-index into a new data dir.*or a new collection"):
        backend.ensure_collection(DIM * 2, FIELDS)


# -- the embedded engine: reopening, locking, crashes ----------------------------------------------


def test_reopening_an_edge_store_keeps_points_payloads_and_the_dimension(tmp_path: Path) -> None:
    kept = point(unit(1, 0), service="api", resolved=True)
    with EdgeBackend(tmp_path) as first:
        first.ensure_collection(DIM, FIELDS)
        first.upsert([kept])
    with EdgeBackend(tmp_path) as second:
        assert second.count({"resolved": True}) == 1  # usable before ensure_collection
        second.ensure_collection(DIM, FIELDS)
        assert second.retrieve([kept.id])[0].payload == kept.payload
        with pytest.raises(BackendError, match="Re-index"):
            second.ensure_collection(DIM + 1, FIELDS)


def test_an_indexed_quantized_edge_store_still_finds_points_and_applies_filters(tmp_path: Path) -> None:
    rng = np.random.default_rng(2)
    points = [point(random_unit(rng), service="db" if i % 4 == 0 else "api", ts=float(i)) for i in range(600)]
    with EdgeBackend(tmp_path, exact_below_points=100) as backend:  # HNSW past 100 points
        backend.ensure_collection(DIM, FIELDS)
        backend.upsert(points)
        backend.optimize()
        assert backend._shard is not None and backend._shard.info().indexed_vectors_count >= 500
        for p in points[:20]:
            best = backend.search(p.vector, k=1)[0]
            assert best.id == p.id and best.score == pytest.approx(1.0, abs=1e-3)
        hits = backend.search(points[1].vector, 5, {"service": "db", "ts": Range(gte=100.0)})
        assert len(hits) == 5 and all(h.payload["service"] == "db" and h.payload["ts"] >= 100 for h in hits)
        assert backend.count({"service": "db"}) == 150


def test_an_edge_store_without_a_collection_says_to_create_one(tmp_path: Path) -> None:
    with EdgeBackend(tmp_path) as fresh, pytest.raises(BackendError, match="ensure_collection"):
        fresh.count()


def test_a_second_process_on_the_same_folder_gets_an_error_naming_the_fixes(tmp_path: Path) -> None:
    with EdgeBackend(tmp_path) as held:
        held.ensure_collection(DIM, FIELDS)
        child = subprocess.run(
            [sys.executable, "-c", LOCKED, str(tmp_path)], capture_output=True, text=True, timeout=60, **CHILD
        )
    assert child.returncode == 3, child.stderr
    assert str(tmp_path) in child.stdout and f"pid {os.getpid()}" in child.stdout
    assert all(fix in child.stdout for fix in FIXES)


def test_opening_the_same_folder_twice_in_one_process_is_refused_until_closed(tmp_path: Path) -> None:
    first = EdgeBackend(tmp_path)
    with pytest.raises(StoreLockedError, match="this process") as caught:
        EdgeBackend(tmp_path)
    assert all(fix in str(caught.value) for fix in FIXES)
    first.close()
    EdgeBackend(tmp_path).close()


def test_a_qdrant_local_folder_held_elsewhere_gets_the_same_fixes(tmp_path: Path) -> None:
    with QdrantClientBackend.local(tmp_path, "incidents"):
        with pytest.raises(StoreLockedError) as caught:
            QdrantClientBackend.local(tmp_path, "incidents")
    assert str(tmp_path) in str(caught.value) and all(fix in str(caught.value) for fix in FIXES)


LOCKED = """
import sys
from pathlib import Path
from knowledge.backend import StoreLockedError
from knowledge.backend_edge import EdgeBackend
try:
    EdgeBackend(Path(sys.argv[1]))
except StoreLockedError as exc:
    print(exc)
    raise SystemExit(3)
"""

WRITER = """
import sys, uuid
from pathlib import Path
import numpy as np
from knowledge.backend import VectorPoint
from knowledge.backend_edge import EdgeBackend
backend = EdgeBackend(Path(sys.argv[1]))
backend.ensure_collection({dim}, {{"service": "keyword"}})
rng = np.random.default_rng(0)
previous = None
while True:
    pid = str(uuid.uuid4())
    backend.upsert([VectorPoint(pid, rng.standard_normal({dim}).astype(np.float32), {{"service": "api"}})])
    if previous:
        backend.set_payload(previous, {{"resolved": True}})
    print(pid, flush=True)  # acknowledged: upsert (and the payload of the one before) returned
    previous = pid
"""


def test_every_write_acknowledged_before_a_kill_9_is_there_after_reopening(tmp_path: Path) -> None:
    command = [sys.executable, "-c", WRITER.format(dim=DIM), str(tmp_path)]
    writer = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **CHILD)
    assert writer.stdout is not None
    acked = [writer.stdout.readline().strip() for _ in range(60)]
    os.kill(writer.pid, signal.SIGKILL)  # mid-write: it keeps writing until the signal lands
    writer.wait()
    assert all(acked), writer.stderr.read() if writer.stderr else ""
    with EdgeBackend(tmp_path) as reopened:
        found = {h.id: h.payload for h in reopened.retrieve(acked)}
        assert set(found) == set(acked)
        assert all(found[i].get("resolved") for i in acked[:-1])


def test_errors_from_an_unreachable_server_name_the_url_and_operation_but_not_the_key() -> None:
    backend = QdrantClientBackend.server("https://127.0.0.1:9", "sekrit-key", "incidents", timeout=2)
    with pytest.raises(BackendError) as caught:
        backend.ensure_collection(DIM, FIELDS)
    message = str(caught.value)
    assert "https://127.0.0.1:9" in message and "ensure_collection" in message and "incidents" in message
    assert "sekrit-key" not in message
    backend.close()
