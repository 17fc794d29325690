"""Shared fixtures. Every test gets its own data dir, so nothing touches ~/.local/share."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from detectors import Detector

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
