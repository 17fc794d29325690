"""Stores on each real engine, embedding with the shipped detector and the real MiniLM encoder."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from detectors import Detector
from knowledge.embedding import TemplateMeanEmbedder
from knowledge.open import StoreLocation, open_store
from knowledge.store import IncidentStore
from tests.conftest import QDRANT_SERVER_API_KEY, QDRANT_SERVER_URL

ENGINES = ["edge", "qdrant-local", "qdrant-server"]


def location_for(engine: str, data_dir: Path) -> StoreLocation:
    if engine == "qdrant-server":
        if not QDRANT_SERVER_URL:
            pytest.skip("set LOGTRIAGE_QDRANT_URL to run the store suite against a Qdrant server")
        return StoreLocation(
            data_dir=data_dir,
            collection=f"logtriage-test-{uuid.uuid4().hex[:8]}",
            qdrant_url=QDRANT_SERVER_URL,
            qdrant_api_key=QDRANT_SERVER_API_KEY,
        )
    return StoreLocation(data_dir=data_dir, engine=engine)  # type: ignore[arg-type]


@pytest.fixture(params=ENGINES)
def engine(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def location(engine: str, tmp_path: Path) -> StoreLocation:
    return location_for(engine, tmp_path / "data")


@pytest.fixture
def store(location: StoreLocation, shipped_detector: Detector) -> Iterator[IncidentStore]:
    opened = open_store(location, TemplateMeanEmbedder(shipped_detector.cache))
    yield opened
    if location.qdrant_url:
        drop = getattr(opened.backend, "drop_collection", None)
        if drop is not None:
            drop()
    opened.close()
