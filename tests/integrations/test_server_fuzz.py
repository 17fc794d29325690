"""Schemathesis (its CLI, a real HTTP client) against the server's own OpenAPI document:
no generated request may cause a server error."""

from __future__ import annotations

import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from integrations.server import create_app
from integrations.server_deps import ServerDeps
from integrations.settings import Settings
from tests.integrations.conftest import TOKEN
from tests.integrations.loopback import serving

pytestmark = pytest.mark.slow


@pytest.fixture
def served(server_settings: Settings, deps: ServerDeps) -> Iterator[str]:
    with serving(create_app(server_settings, deps)) as url:
        yield url


def test_no_generated_request_causes_a_server_error(served: str) -> None:
    cli = shutil.which("schemathesis", path=str(Path(sys.executable).parent)) or "schemathesis"
    run = subprocess.run(
        [
            cli,
            "run",
            f"{served}/openapi.json",
            "--checks",
            "not_a_server_error",
            "--header",
            f"Authorization: Bearer {TOKEN}",
            "--max-examples",
            "30",
            "--request-timeout",
            "60",
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert run.returncode == 0, run.stdout[-4000:] + run.stderr[-2000:]
