"""A fake Slack Web API for tests and the Slack benchmark: the one double at Slack's boundary.

Served on loopback (`tests.integrations.loopback.serving`), it answers the methods the app calls
the way Slack does and records every call: method, arguments (JSON, form or query), token and
arrival time. Tests wait on the recording with a timeout instead of sleeping. It can answer a
method with 429 and a Retry-After once, and it serves files (files.info and the download URL).
"""

from __future__ import annotations

import itertools
import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

BOT_USER = "UBOT"
TEAM = "T1"


@dataclass(frozen=True)
class Call:
    method: str
    args: dict[str, Any]
    token: str | None
    at: float  # time.perf_counter() on arrival
    status: int  # the HTTP status the fake answered with
    answer: dict[str, Any]  # the JSON the fake answered with


class FakeSlack:
    def __init__(self) -> None:
        self.calls: list[Call] = []
        self.downloads: list[tuple[str, str | None]] = []  # (path, token)
        self.files: dict[str, tuple[dict[str, Any], bytes]] = {}
        self.url = ""  # set by the test once served
        self._rate_limited: dict[str, list[int]] = {}
        self._errors: dict[str, list[str]] = {}
        self._changed = threading.Condition()
        self._ts = itertools.count(1)
        self.app = Starlette(
            routes=[
                Route("/api/{method}", self._api, methods=["GET", "POST"]),
                Route("/files/{file_id}/{name}", self._download, methods=["GET"]),
            ]
        )

    @property
    def api_url(self) -> str:
        return f"{self.url}/api/"

    # -- what tests set up --

    def rate_limit_once(self, method: str, retry_after: int) -> None:
        """The next call of `method` gets 429 with this Retry-After."""
        with self._changed:
            self._rate_limited.setdefault(method, []).append(retry_after)

    def error_once(self, method: str, error: str) -> None:
        """The next call of `method` gets Slack's `{"ok": false, "error": ...}`."""
        with self._changed:
            self._errors.setdefault(method, []).append(error)

    def add_file(
        self, file_id: str, name: str, content: bytes, mimetype: str = "text/plain"
    ) -> dict[str, Any]:
        """A file as Slack lists it in a message event."""
        info = {
            "id": file_id,
            "name": name,
            "mimetype": mimetype,
            "filetype": "text" if mimetype.startswith("text/") else "binary",
            "size": len(content),
            "url_private": f"{self.url}/files/{file_id}/{name}",
            "url_private_download": f"{self.url}/files/{file_id}/{name}?download=1",
        }
        self.files[file_id] = (info, content)
        return info

    # -- what tests read --

    def of(self, method: str, where: Callable[[Call], bool] | None = None) -> list[Call]:
        with self._changed:
            return [
                c
                for c in self.calls
                if c.method == method and c.status == 200 and (where is None or where(c))
            ]

    def wait_for(
        self, method: str, count: int = 1, where: Callable[[Call], bool] | None = None, timeout: float = 30.0
    ) -> list[Call]:
        """The first `count` successful calls of `method` matching `where`; fails after `timeout` seconds."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while len(found := self.of(method, where)) < count:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    seen = [(c.method, c.status) for c in self.calls]
                    raise AssertionError(f"no {count} x {method} within {timeout} s; calls so far: {seen}")
                self._changed.wait(remaining)
        return found[:count]

    # -- the API --

    async def _api(self, request: Request) -> Response:
        method = request.path_params["method"]
        args = await _arguments(request)
        auth = request.headers.get("authorization", "")
        token = auth.removeprefix("Bearer ") if auth.startswith("Bearer ") else args.get("token")
        with self._changed:
            waits = self._rate_limited.get(method)
            retry_after = waits.pop(0) if waits else None
            status = 429 if retry_after is not None else 200
            errors = self._errors.get(method) if status == 200 else None
            error = errors.pop(0) if errors else ("ratelimited" if status == 429 else None)
            answer = {"ok": False, "error": error} if error else self._answer(method, args)
            self.calls.append(Call(method, args, token, time.perf_counter(), status, answer))
            self._changed.notify_all()
        headers = {"Retry-After": str(retry_after)} if retry_after is not None else None
        return JSONResponse(answer, status_code=status, headers=headers)

    def _answer(self, method: str, args: dict[str, Any]) -> dict[str, Any]:
        if method == "auth.test":
            return {"ok": True, "team_id": TEAM, "user_id": BOT_USER, "bot_id": "BBOT", "user": "logtriage"}
        if method == "chat.postMessage":
            ts = f"1700000000.{next(self._ts):06d}"
            return {
                "ok": True,
                "channel": args.get("channel"),
                "ts": ts,
                "message": {"ts": ts, "text": args.get("text")},
            }
        if method == "chat.update":
            return {
                "ok": True,
                "channel": args.get("channel"),
                "ts": args.get("ts"),
                "text": args.get("text"),
            }
        if method == "chat.postEphemeral":
            return {"ok": True, "message_ts": f"1700000000.{next(self._ts):06d}"}
        if method == "views.open":
            return {"ok": True, "view": {"id": "V1", **(args.get("view") or {})}}
        if method == "files.info":
            found = self.files.get(str(args.get("file")))
            return {"ok": True, "file": found[0]} if found else {"ok": False, "error": "file_not_found"}
        return {"ok": True}

    async def _download(self, request: Request) -> Response:
        auth = request.headers.get("authorization", "")
        self.downloads.append((request.url.path, auth.removeprefix("Bearer ") or None))
        found = self.files.get(request.path_params["file_id"])
        if found is None or not auth:
            return Response(status_code=404)
        return Response(found[1], media_type=found[0]["mimetype"])


async def _arguments(request: Request) -> dict[str, Any]:
    args: dict[str, Any] = dict(request.query_params)
    body = await request.body()
    if not body:
        return args
    if "json" in request.headers.get("content-type", ""):
        args.update(json.loads(body))
    else:
        args.update(parse_qsl(body.decode()))
    for key in ("blocks", "view"):  # form-encoded calls send these as JSON strings
        if isinstance(args.get(key), str):
            args[key] = json.loads(args[key])
    return args
