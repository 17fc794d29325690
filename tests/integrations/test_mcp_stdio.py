"""`logtriage mcp` over stdio, as an IDE runs it, while `logtriage serve` holds the embedded store.

The server is `create_app` under uvicorn in this process, holding the store in its data dir; the
stdio server is the real command in a subprocess, driven by the SDK's stdio client.
"""

from __future__ import annotations

import getpass
import json
import os
import socket
import subprocess
from collections.abc import Iterator
from contextlib import AsyncExitStack

import pytest
from mcp import Client, StdioServerParameters

from integrations.server import create_app
from integrations.server_deps import ServerDeps
from integrations.settings import Settings
from knowledge.store import IncidentStore
from tests.integrations.conftest import TOKEN
from tests.integrations.test_mcp import (
    LOGTRIAGE,
    MODEL_CARD,
    STARTUP_S,
    answer_of,
    error_text,
    serving,
    text_of,
)
from tools import TOOLS

# Each test starts `logtriage mcp`: seconds of imports (torch) per start.
pytestmark = [pytest.mark.anyio, pytest.mark.slow]


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def server_url(server_settings: Settings, deps: ServerDeps) -> Iterator[str]:
    with serving(create_app(server_settings, deps)) as url:
        yield url


def stdio_env(port: int, **extra: str) -> dict[str, str]:
    # The autouse fixture pointed LOGTRIAGE_DATA_DIR elsewhere; the server's data dir is the one held.
    return {**os.environ, "LOGTRIAGE_PORT": str(port), "LOGTRIAGE_API_TOKEN": TOKEN, **extra}


async def test_stdio_forwards_to_the_running_server_when_it_holds_the_store(
    server_url: str, server_settings: Settings, incident_store: IncidentStore, retry_storm: list[str]
) -> None:
    port = int(server_url.rsplit(":", 1)[1])
    env = stdio_env(port, LOGTRIAGE_DATA_DIR=str(server_settings.data_dir), LOGTRIAGE_LLM_BACKEND="none")
    params = StdioServerParameters(command=LOGTRIAGE, args=["mcp"], env=env)
    async with Client(params, read_timeout_seconds=STARTUP_S) as stdio:
        assert [t.name for t in (await stdio.list_tools()).tools] == [s.name for s in TOOLS]
        arguments = {"lines": retry_storm, "correct": False}
        receipt = answer_of(await stdio.call_tool("record_feedback", arguments)).feedback
        assert receipt is not None and receipt.user == f"{getpass.getuser()}@mcp"
        incident = json.loads(
            text_of((await stdio.read_resource(f"incident://{receipt.incident_id}")).contents)
        )
        card = json.loads(text_of((await stdio.read_resource(MODEL_CARD)).contents))
        bad = await stdio.call_tool("score_logs", {"lines": 3})
    assert incident["label"] == 0 and card["version"].startswith("lt-det-")
    assert "lines: Input should be a valid list" in error_text(bad)
    stored = incident_store.get(receipt.incident_id)
    assert stored is not None and [v.user for v in stored.feedback] == [receipt.user]


async def test_stdio_forwarding_turns_a_server_that_went_away_into_a_tool_error(
    server_settings: Settings, deps: ServerDeps, retry_storm: list[str]
) -> None:
    async with AsyncExitStack() as stack:
        with serving(create_app(server_settings, deps)) as url:
            port = int(url.rsplit(":", 1)[1])
            env = stdio_env(port, LOGTRIAGE_DATA_DIR=str(server_settings.data_dir))
            params = StdioServerParameters(command=LOGTRIAGE, args=["mcp"], env=env)
            stdio = await stack.enter_async_context(Client(params, read_timeout_seconds=STARTUP_S))
        result = await stdio.call_tool("score_logs", {"lines": retry_storm})
    assert f"the logtriage server at http://127.0.0.1:{port}/mcp did not answer" in error_text(result)


def run_stdio(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [LOGTRIAGE, "mcp", *args], env=env, input="", capture_output=True, text=True, timeout=120
    )


def test_stdio_fails_naming_both_fixes_when_the_store_is_held_and_no_server_answers(
    server_settings: Settings, incident_store: IncidentStore
) -> None:
    with socket.socket() as unused:
        unused.bind(("127.0.0.1", 0))
        port = unused.getsockname()[1]
    done = run_stdio(env=stdio_env(port, LOGTRIAGE_DATA_DIR=str(server_settings.data_dir)))
    assert done.returncode == 2 and done.stdout == ""
    message = " ".join(done.stderr.split())
    assert f"http://127.0.0.1:{port}/mcp did not answer" in message
    assert "Is `logtriage serve` running" in message and "LOGTRIAGE_QDRANT_URL" in message


def test_stdio_via_local_refuses_a_held_store_naming_the_holder(
    server_settings: Settings, incident_store: IncidentStore
) -> None:
    done = run_stdio("--via", "local", env=stdio_env(1, LOGTRIAGE_DATA_DIR=str(server_settings.data_dir)))
    message = " ".join(done.stderr.split())
    assert (
        done.returncode == 2 and "is already open in another process" in message and "--via auto" in message
    )
