"""The stdio server's backend when another process holds the store: the running `logtriage serve`.

An embedded incident store admits one process at a time. When `logtriage serve` holds it, `logtriage
mcp` serves the same tools, resources and prompt over stdio but runs each call on the server's /mcp
endpoint, with the server's token and the local user's name (the `X-Logtriage-User` header).
Calls share one client session on kept-alive connections (a session per call cost about 1 ms).
A call that loses the server drops it and the next one opens another, so a restarted server is
picked up, and an unreachable one is a tool error that names it, never a dead stdio server.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass, field, replace
from typing import Any

import anyio
import httpx2
from anyio.abc import TaskGroup, TaskStatus
from mcp import Client
from mcp.client.streamable_http import streamable_http_client
from mcp.server.mcpserver import Context, MCPServer
from mcp.server.mcpserver.exceptions import ResourceError
from mcp.shared.exceptions import MCPError
from mcp.types import (
    CONNECTION_CLOSED,
    CallToolRequest,
    CallToolRequestParams,
    CallToolResult,
    TextResourceContents,
)
from mcp.types.version import MODERN_PROTOCOL_VERSIONS

from integrations.mcp_server import INCIDENT_URI, MODEL_CARD_URI, USER_HEADER, build_server, tool_error
from tools.registry import ToolSpec

CONNECT_TIMEOUT_S = 5.0
# What a failed connection can raise: transport errors, a protocol error the server answered
# (a wrong token), a timeout, or a group of these from the SDK's transport task group.
_UNREACHABLE = (httpx2.TransportError, MCPError, TimeoutError, OSError)


class ServerUnreachableError(RuntimeError):
    """The running server did not answer; the message names its URL and the fixes."""


def server_headers(token: str | None, user: str) -> dict[str, str]:
    headers = {USER_HEADER: user}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    return headers


def is_unreachable(err: BaseException) -> bool:
    """Whether `err` says the server could not be reached or refused us, and nothing else."""
    if isinstance(err, BaseExceptionGroup):
        return err.split(_UNREACHABLE)[1] is None
    return isinstance(err, _UNREACHABLE)


def _reason(err: BaseException) -> str:
    if isinstance(err, BaseExceptionGroup):
        return "; ".join(_reason(inner) for inner in err.exceptions)
    return str(err) or type(err).__name__


class SharedSession:
    """One client session to the server, open between calls.

    The SDK's client runs task groups that must close in the task that opened them, so a task of
    this class's own holds the session while calls use it. A call that loses the server drops the
    session, and the next call opens a new one.
    """

    def __init__(self, connect: Callable[[], AbstractAsyncContextManager[Client]], tasks: TaskGroup) -> None:
        self._connect = connect
        self._tasks = tasks
        self._lock = anyio.Lock()
        self._current: _Held | None = None

    async def client(self) -> Client:
        async with self._lock:
            if self._current is None:
                self._current = await self._tasks.start(self._hold)
            return self._current.client

    async def drop(self, client: Client) -> BaseException | None:
        """Close the session of `client` if it is still the current one; what ended it, if known."""
        held = self._current
        if held is None or held.client is not client:
            return None
        self._current = None
        held.release.set()
        with anyio.move_on_after(CONNECT_TIMEOUT_S):
            await held.closed.wait()
        return held.error

    async def _hold(self, *, task_status: TaskStatus[_Held]) -> None:
        held: _Held | None = None
        try:
            async with self._connect() as client:
                held = _Held(client)
                task_status.started(held)
                await held.release.wait()
        except (*_UNREACHABLE, BaseExceptionGroup) as err:
            # Before `started`, the error goes to the call opening the session; after, it ended the
            # session (the server went away): kept for the message of the call that failed.
            if held is None or not is_unreachable(err):
                raise
            held.error = err
        finally:
            if held is not None:
                held.closed.set()


@dataclass
class _Held:
    client: Client
    release: anyio.Event = field(default_factory=anyio.Event)
    closed: anyio.Event = field(default_factory=anyio.Event)
    error: BaseException | None = None


@dataclass(frozen=True)
class RemoteBackend:
    """Runs every call on the MCP endpoint at `url` (`logtriage serve`'s /mcp)."""

    url: str
    http: httpx2.AsyncClient  # carries the token and user headers; owned by the caller
    timeout_s: float
    # How to connect: the protocol version the server answered at startup (no probe per call),
    # "legacy" for the 2025 handshake, or "auto" to probe.
    mode: str = "auto"
    shared: SharedSession | None = None  # None: a session per call

    @asynccontextmanager
    async def connected(self) -> AsyncIterator[Client]:
        """A new client session, closed on exit."""
        transport = streamable_http_client(self.url, http_client=self.http, terminate_on_close=False)
        async with Client(
            transport, read_timeout_seconds=self.timeout_s, mode=self.mode, cache=None
        ) as client:
            yield client

    @asynccontextmanager
    async def session(self) -> AsyncIterator[Client]:
        """The shared session (dropped if the call fails), or a new one without sharing."""
        if self.shared is None:
            async with self.connected() as client:
                yield client
            return
        client = await self.shared.client()
        try:
            yield client
        except (*_UNREACHABLE, BaseExceptionGroup) as err:
            if isinstance(err, MCPError) and err.code != CONNECTION_CLOSED:
                raise  # the server's own answer (an unknown incident): the session is fine
            ended = await self.shared.drop(client)
            if ended is not None and is_unreachable(err):
                raise ended from err  # names the cause (refused, reset), not the SDK's "Connection closed"
            raise

    def unreachable(self, err: BaseException) -> str:
        return (
            f"error: the logtriage server at {self.url} did not answer ({_reason(err)}). Is `logtriage "
            "serve` running, with the same LOGTRIAGE_API_TOKEN? Start it, or restart this MCP server "
            "with --server-url pointing at it."
        )

    async def call_tool(self, spec: ToolSpec, arguments: dict[str, Any], context: Context) -> CallToolResult:
        try:
            async with self.session() as client:
                # Not `client.call_tool`: it would list the tools and compile their output schemas on
                # every connection, while this server's own tool wrapper checks the result as an Answer.
                request = CallToolRequest(params=CallToolRequestParams(name=spec.name, arguments=arguments))
                return await client.session.send_request(request, CallToolResult)
        except (*_UNREACHABLE, BaseExceptionGroup) as err:  # the transport's task group wraps its errors
            if not is_unreachable(err):
                raise
            return tool_error(self.unreachable(err))

    async def _read(self, uri: str) -> str:
        try:
            async with self.session() as client:
                result = await client.read_resource(uri)
        except MCPError:
            raise  # the server's own answer (an unknown incident): passed on with its code
        except (*_UNREACHABLE, BaseExceptionGroup) as err:
            if not is_unreachable(err):
                raise
            raise ResourceError(self.unreachable(err)) from err
        texts = [c.text for c in result.contents if isinstance(c, TextResourceContents)]
        return texts[0] if texts else ""

    async def read_incident(self, incident_id: str) -> str:
        return await self._read(INCIDENT_URI.format(incident_id=incident_id))

    async def model_card(self) -> str:
        return await self._read(MODEL_CARD_URI)


async def negotiate(backend: RemoteBackend) -> RemoteBackend:
    """The backend connecting as the server answered now; `ServerUnreachableError` if it did not."""
    try:
        with anyio.fail_after(CONNECT_TIMEOUT_S):
            async with backend.connected() as client:
                version = client.protocol_version
    except (*_UNREACHABLE, BaseExceptionGroup) as err:
        if not is_unreachable(err):
            raise
        raise ServerUnreachableError(backend.unreachable(err).removeprefix("error: ")) from err
    return replace(backend, mode=version if version in MODERN_PROTOCOL_VERSIONS else "legacy")


async def serve_stdio_via(url: str, headers: Mapping[str, str], timeout_s: float) -> None:
    """Serve the tools over stdio, every call forwarded to the server at `url`."""
    timeout = httpx2.Timeout(CONNECT_TIMEOUT_S, read=timeout_s)
    async with httpx2.AsyncClient(headers=dict(headers), timeout=timeout) as http:
        backend = await negotiate(RemoteBackend(url, http, timeout_s))
        async with anyio.create_task_group() as tasks:
            shared = replace(backend, shared=SharedSession(backend.connected, tasks))
            server: MCPServer = build_server(shared)
            await server.run_stdio_async()
            tasks.cancel_scope.cancel()  # closes the shared session
