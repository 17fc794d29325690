"""Shared fixtures. Every test gets its own data dir, so nothing touches ~/.local/share."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from detectors import Detector
from knowledge.embedding import TemplateMeanEmbedder
from knowledge.open import StoreLocation, open_store
from knowledge.store import IncidentStore
from tools import Caller, ToolContext

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"

# Captured before the autouse fixture clears them, so only the server-mode tests see a server.
QDRANT_SERVER_URL = os.environ.get("LOGTRIAGE_QDRANT_URL")
QDRANT_SERVER_API_KEY = os.environ.get("LOGTRIAGE_QDRANT_API_KEY")


@pytest.fixture(autouse=True)
def isolated_data_dir(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> Path:
    data_dir = tmp_path_factory.mktemp("logtriage-data")
    monkeypatch.setenv("LOGTRIAGE_DATA_DIR", str(data_dir))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(data_dir / "config"))  # no user config file leaks in
    for name in (
        "LOGTRIAGE_MODEL_DIR",
        "LOGTRIAGE_ENCODER_PATH",
        "LOGTRIAGE_CONFIG",
        "LOGTRIAGE_QDRANT_URL",
        "LOGTRIAGE_QDRANT_API_KEY",
    ):
        monkeypatch.delenv(name, raising=False)
    return data_dir


@pytest.fixture(scope="session")
def shipped_detector(tmp_path_factory: pytest.TempPathFactory) -> Detector:
    """The shipped model with the real MiniLM encoder, loaded once per test session."""
    cache = tmp_path_factory.mktemp("embedding-cache") / "templates.sqlite"
    return Detector.load(cache_path=cache)


@pytest.fixture
def shared_data() -> Path:
    if not SHARED_DATA.is_dir():
        pytest.skip(f"shared data not present at {SHARED_DATA}")
    return SHARED_DATA


@pytest.fixture
def qdrant_server() -> tuple[str, str | None]:
    """(url, api key) of the Qdrant server named by LOGTRIAGE_QDRANT_URL; skips when unset."""
    if not QDRANT_SERVER_URL:
        pytest.skip("set LOGTRIAGE_QDRANT_URL (and LOGTRIAGE_QDRANT_API_KEY) to run server-mode tests")
    return QDRANT_SERVER_URL, QDRANT_SERVER_API_KEY


# -- logs, a real incident store and a tool context, for tools and every surface above them --

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "payment-incident.log"


@pytest.fixture(scope="session")
def example_lines() -> list[str]:
    return EXAMPLE.read_text().splitlines()


@pytest.fixture(scope="session")
def normal_lines(example_lines: list[str]) -> list[str]:
    """A checkout that went well: the detector calls it normal with p < 0.05."""
    return example_lines[:12]


@pytest.fixture(scope="session")
def retry_storm(example_lines: list[str]) -> list[str]:
    """INFO-level connection retries with no error keyword: anomalous (network_timeout)."""
    return example_lines[12:]


@pytest.fixture
def incident_store(tmp_path: Path, shipped_detector: Detector) -> Iterator[IncidentStore]:
    store = open_store(
        StoreLocation(data_dir=tmp_path / "data"), TemplateMeanEmbedder(shipped_detector.cache)
    )
    yield store
    store.close()


@pytest.fixture
def ctx(shipped_detector: Detector, incident_store: IncidentStore) -> ToolContext:
    return ToolContext(detector=shipped_detector, store=incident_store)


@pytest.fixture
def engineer() -> Caller:
    return Caller(user="ana", source="cli", authenticated=True)
