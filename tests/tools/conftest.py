"""A tool context on the real detector and a real embedded (Qdrant Edge) incident store."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from detectors import Detector
from knowledge.embedding import TemplateMeanEmbedder
from knowledge.open import StoreLocation, open_store
from knowledge.store import IncidentStore
from tools import Caller, ToolContext

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "payment-incident.log"


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
    store = open_store(StoreLocation(data_dir=tmp_path / "data"), TemplateMeanEmbedder(shipped_detector.cache))
    yield store
    store.close()


@pytest.fixture
def ctx(shipped_detector: Detector, incident_store: IncidentStore) -> ToolContext:
    return ToolContext(detector=shipped_detector, store=incident_store)


@pytest.fixture
def engineer() -> Caller:
    return Caller(user="ana", source="cli", authenticated=True)
