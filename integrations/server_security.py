"""Bearer-token auth and the request body limit, shared by the API, the webhooks and later surfaces."""

from __future__ import annotations

import hmac
import ipaddress
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from fastapi import HTTPException, Request

from integrations.settings import ConfigError, Settings

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


def api_tokens(settings: Settings) -> tuple[str, ...]:
    if settings.api_token is None:
        return ()
    return tuple(t.strip() for t in settings.api_token.get_secret_value().split(",") if t.strip())


def is_loopback(host: str) -> bool:
    if host in ("localhost", ""):
        return host == "localhost"
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_exposure(settings: Settings, insecure: bool) -> None:
    """Refuse to listen beyond loopback without auth, unless the operator said --insecure."""
    if not api_tokens(settings) and not is_loopback(settings.host) and not insecure:
        raise ConfigError(
            f"refusing to serve on {settings.host} without authentication: set LOGTRIAGE_API_TOKEN "
            "(comma-separated bearer tokens), listen on 127.0.0.1 (--host), or pass --insecure"
        )


class BearerAuth:
    """A FastAPI dependency: with tokens configured, every request needs `Authorization: Bearer <token>`."""

    def __init__(self, tokens: tuple[str, ...]) -> None:
        self.tokens = tuple(t.encode() for t in tokens)

    async def __call__(self, request: Request) -> None:
        # A coroutine, so FastAPI runs it on the event loop instead of handing every request to a
        # thread and back (two waits for the GIL while workers are busy).
        self.check(request)

    def check(self, request: Request) -> None:
        """Raise HTTPException(401) unless the request carries one of the tokens."""
        if not self.tokens:
            return
        header = request.headers.get("authorization", "")
        scheme, _, value = header.partition(" ")
        given = value.strip().encode()
        # Compare against every token so the time taken does not reveal which one nearly matched.
        matched = False
        for token in self.tokens:
            matched |= hmac.compare_digest(given, token)
        if scheme.lower() != "bearer" or not matched:
            raise HTTPException(
                status_code=401,
                detail="missing or invalid bearer token (Authorization: Bearer <LOGTRIAGE_API_TOKEN>)",
                headers={"WWW-Authenticate": "Bearer"},
            )


class BodyLimit:
    """ASGI middleware: refuse bodies over `max_bytes` with 413, by header and while streaming."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope.get("headers") or []).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_bytes:
            await _too_large(send, self.max_bytes)
            return
        seen = 0

        async def limited_receive() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_bytes:
                    raise _BodyTooLarge
            return message

        try:
            await self.app(scope, limited_receive, send)
        except _BodyTooLarge:
            await _too_large(send, self.max_bytes)


class _BodyTooLarge(Exception):
    pass


async def _too_large(send: Send, limit: int) -> None:
    body = (
        f'{{"detail": "request body over {limit} bytes; send fewer lines (LOGTRIAGE_MAX_BODY_BYTES)"}}'
    ).encode()
    await send(
        {
            "type": "http.response.start",
            "status": 413,
            "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())],
        }
    )
    await send({"type": "http.response.body", "body": body})
