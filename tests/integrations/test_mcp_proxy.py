"""The forwarding backend of `logtriage mcp` against `logtriage serve`'s app under uvicorn.

Calls share one client session; a call that loses the server drops it, and the next call opens
another, so a server that went away is a tool error naming it and a restarted one is picked up.
"""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager, AsyncExitStack, asynccontextmanager
from dataclasses import replace

import anyio
import httpx2
import pytest
from mcp import Client
from mcp.server.mcpserver import Context
from mcp.shared.exceptions import MCPError
from mcp.types import CallToolResult

from integrations.mcp_proxy import CONNECT_TIMEOUT_S, RemoteBackend, SharedSession, negotiate, server_headers
from integrations.server import create_app
from integrations.server_deps import ServerDeps
from integrations.settings import Settings
from tests.integrations.conftest import TOKEN
from tests.integrations.loopback import serving
from tests.integrations.test_mcp import answer_of, error_text
from tools import REGISTRY

pytestmark = pytest.mark.anyio
SCORE_LOGS = REGISTRY["score_logs"]


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        free: int = probe.getsockname()[1]
        return free


class CountingSessions:
    """Opens the backend's sessions and counts them."""

    def __init__(self, backend: RemoteBackend) -> None:
        self.backend = backend
        self.opened = 0

    def __call__(self) -> AbstractAsyncContextManager[Client]:
        self.opened += 1
        return self.backend.connected()


@asynccontextmanager
async def forwarding(url: str) -> AsyncIterator[tuple[RemoteBackend, CountingSessions]]:
    """A backend sharing its session, as `serve_stdio_via` builds it."""
    timeout = httpx2.Timeout(CONNECT_TIMEOUT_S, read=30)
    async with httpx2.AsyncClient(headers=server_headers(TOKEN, "alice"), timeout=timeout) as http:
        backend = await negotiate(RemoteBackend(f"{url}/mcp", http, 30))
        async with anyio.create_task_group() as tasks:
            sessions = CountingSessions(backend)
            yield replace(backend, shared=SharedSession(sessions, tasks)), sessions
            tasks.cancel_scope.cancel()


async def score(backend: RemoteBackend, lines: list[str]) -> CallToolResult:
    return await backend.call_tool(SCORE_LOGS, {"lines": lines}, Context())


async def test_forwarded_calls_and_reads_share_one_session_which_a_server_error_keeps(
    server_settings: Settings, deps: ServerDeps, port: int, retry_storm: list[str]
) -> None:
    with serving(create_app(server_settings, deps), port) as url:
        async with forwarding(url) as (backend, sessions):
            verdicts = [answer_of(await score(backend, retry_storm)).verdict for _ in range(3)]
            card = await backend.model_card()
            with pytest.raises(MCPError, match="no incident with id 'nope'"):
                await backend.read_incident("nope")  # the server's own answer keeps the session
            after = answer_of(await score(backend, retry_storm)).verdict
    assert verdicts == ["anomalous"] * 3 and after == "anomalous" and '"version": "lt-det-' in card
    assert sessions.opened == 1


async def test_server_that_went_away_is_a_tool_error_and_its_restart_is_picked_up(
    server_settings: Settings, deps: ServerDeps, port: int, retry_storm: list[str]
) -> None:
    async with AsyncExitStack() as stack:
        with serving(create_app(server_settings, deps), port) as url:
            backend, sessions = await stack.enter_async_context(forwarding(url))
            before = answer_of(await score(backend, retry_storm)).verdict
        gone = await score(backend, retry_storm)
        with serving(create_app(server_settings, deps), port):
            after = answer_of(await score(backend, retry_storm)).verdict
    assert f"the logtriage server at {url}/mcp did not answer (All connection attempts failed)" in error_text(
        gone
    )
    assert before == after == "anomalous"
    assert sessions.opened == 2  # the first one ended with the server
