"""The MCP server over streamable HTTP: one ASGI endpoint that `logtriage serve` routes at /mcp.

Requests pass three checks before the SDK's transport sees them: the bearer token (the server's
`LOGTRIAGE_API_TOKEN`, compared in constant time as for the API), then the SDK's Host and Origin
checks against DNS rebinding (loopback names, the listen address and the configured extras), then
the body size limit. The transport is stateless with JSON responses: each POST carries a whole
request and its answer, so nothing is held per client and any worker can answer.

The SDK's session manager must run while the endpoint serves: enter `MCPEndpoint.running()` in
the host app's lifespan.
"""

from __future__ import annotations

import json
import socket
from collections.abc import Callable, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass

from fastapi import FastAPI, HTTPException, Request
from mcp.server.mcpserver import MCPServer
from mcp.server.transport_security import TransportSecuritySettings
from starlette.routing import Match, Route

from integrations.mcp_server import HeaderUser, local_server
from integrations.server_security import (
    ASGIApp,
    BearerAuth,
    Receive,
    Scope,
    Send,
    api_tokens,
    is_loopback,
)
from integrations.settings import Settings
from tools.context import ToolContext

MCP_PATH = "/mcp"
LOOPBACK_NAMES = ("127.0.0.1", "localhost", "[::1]")
_WILDCARD_ADDRESSES = ("0.0.0.0", "::", "")

# The answer to a missing or wrong token is a JSON-RPC error, so MCP clients show its message.
UNAUTHORIZED = "missing or invalid bearer token: send Authorization: Bearer <one of LOGTRIAGE_API_TOKEN>"
_UNAUTHORIZED_CODE = -32001  # implementation-defined server error (JSON-RPC reserves -32000..-32099)


@dataclass(frozen=True)
class MCPEndpoint:
    app: ASGIApp
    server: MCPServer

    def running(self) -> AbstractAsyncContextManager[None]:
        """The SDK's session manager, for the host app's lifespan; it can run once per endpoint."""
        return self.server.session_manager.run()


class BearerGuard:
    """ASGI middleware: the API's bearer-token check (`BearerAuth`) in front of a plain ASGI app."""

    def __init__(self, app: ASGIApp, tokens: Sequence[str]) -> None:
        self.app = app
        self.auth = BearerAuth(tuple(tokens))

    def authorized(self, scope: Scope) -> bool:
        try:
            self.auth.check(Request(scope))
        except HTTPException:
            return False
        return True

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or self.authorized(scope):
            await self.app(scope, receive, send)
            return
        body = json.dumps(
            {"jsonrpc": "2.0", "id": None, "error": {"code": _UNAUTHORIZED_CODE, "message": UNAUTHORIZED}}
        ).encode()
        await send(
            {
                "type": "http.response.start",
                "status": 401,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode()),
                    (b"www-authenticate", b'Bearer error="invalid_token"'),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})


class _NamedRoute(Route):
    """A route that records itself in the scope as FastAPI's routes do, so request metrics and logs
    name it (/mcp) instead of counting it as unmatched."""

    def matches(self, scope: Scope) -> tuple[Match, Scope]:
        match, child = super().matches(scope)
        if match is not Match.NONE:
            child["route"] = self
        return match, child


def _with_any_port(hosts: Sequence[str]) -> list[str]:
    return [form for host in hosts for form in (host, f"{host}:*")]


def transport_security(
    settings: Settings, extra_hosts: Sequence[str] = (), extra_origins: Sequence[str] = ()
) -> TransportSecuritySettings:
    """Host and Origin allow-lists: loopback, the listen address and this machine's name, plus extras.

    A browser page on another site may not reach the endpoint (Origin), and a name that was made
    to resolve to this machine may not either (Host): together they stop DNS rebinding. Behind a
    reverse proxy or under a DNS name other than the machine's, add that name to `extra_hosts`.
    """
    names = list(LOOPBACK_NAMES)
    if settings.host not in _WILDCARD_ADDRESSES and not is_loopback(settings.host):
        names.append(f"[{settings.host}]" if ":" in settings.host else settings.host)
    if settings.host in _WILDCARD_ADDRESSES:  # reachable by the machine's own names too
        names.extend(dict.fromkeys((socket.gethostname(), socket.getfqdn())))
    origins = [f"{scheme}://{name}" for name in LOOPBACK_NAMES for scheme in ("http", "https")]
    return TransportSecuritySettings(
        enable_dns_rebinding_protection=True,
        allowed_hosts=_with_any_port(names) + list(extra_hosts),
        allowed_origins=_with_any_port(origins) + list(extra_origins),
    )


def mcp_endpoint(
    settings: Settings,
    tools: Callable[[], ToolContext],
    *,
    extra_hosts: Sequence[str] = (),
    extra_origins: Sequence[str] = (),
) -> MCPEndpoint:
    """The guarded streamable HTTP endpoint of a server running tools in this process.

    `tools` is called per request, so the host app may build its context in its lifespan.
    """
    server = local_server(tools, HeaderUser())
    # Builds the SDK's session manager; its own Starlette app is not used: the host app routes to us.
    server.streamable_http_app(
        streamable_http_path=MCP_PATH,
        json_response=True,
        stateless_http=True,
        max_request_body_size=settings.max_body_bytes,
        transport_security=transport_security(settings, extra_hosts, extra_origins),
    )
    return MCPEndpoint(BearerGuard(server.session_manager.handle_request, api_tokens(settings)), server)


def mount_mcp(
    app: FastAPI,
    settings: Settings,
    tools: Callable[[], ToolContext],
    *,
    extra_hosts: Sequence[str] = (),
    extra_origins: Sequence[str] = (),
) -> MCPEndpoint:
    """Route MCP_PATH of `app` to a new endpoint. Enter the returned `running()` in the app's lifespan."""
    endpoint = mcp_endpoint(settings, tools, extra_hosts=extra_hosts, extra_origins=extra_origins)
    # An exact route, not a mount: a mount would redirect /mcp to /mcp/, which MCP clients won't follow.
    app.router.routes.append(_NamedRoute(MCP_PATH, endpoint=endpoint.app, include_in_schema=False))
    return endpoint
