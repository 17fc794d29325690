"""Shared fixtures. Every test gets its own data dir, so nothing touches ~/.local/share."""

from __future__ import annotations

from pathlib import Path

import pytest

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


@pytest.fixture(autouse=True)
def isolated_data_dir(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> Path:
    data_dir = tmp_path_factory.mktemp("logtriage-data")
    monkeypatch.setenv("LOGTRIAGE_DATA_DIR", str(data_dir))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(data_dir / "config"))  # no user config file leaks in
    for name in ("LOGTRIAGE_MODEL_DIR", "LOGTRIAGE_ENCODER_PATH", "LOGTRIAGE_CONFIG"):
        monkeypatch.delenv(name, raising=False)
    return data_dir


@pytest.fixture
def shared_data() -> Path:
    if not SHARED_DATA.is_dir():
        pytest.skip(f"shared data not present at {SHARED_DATA}")
    return SHARED_DATA
