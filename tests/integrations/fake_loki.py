"""A loopback fake of Loki's HTTP API: a real server on 127.0.0.1, answering with recorded JSON.

    with FakeLoki(recorded_body) as loki:
        LokiLogs(loki.url, ...).fetch(event)
        assert loki.requests[0].params["query"] == ...

It records every request, answers each with the current (status, body), and can be told to stall,
holding requests until the test ends (or `release()`), to exercise client timeouts without sleeping.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from urllib.parse import parse_qs, urlsplit

STALL_LIMIT_S = 10.0  # a stalled request gives up after this, so a broken test cannot hang forever


@dataclass(frozen=True)
class RecordedRequest:
    method: str
    path: str
    params: dict[str, str]  # the query string, one value per name
    headers: dict[str, str]  # names lower-cased


class FakeLoki:
    def __init__(self, body: bytes | str = b"{}", status: int = 200) -> None:
        self.requests: list[RecordedRequest] = []
        self._response = (status, body.encode() if isinstance(body, str) else body)
        self._lock = threading.Lock()
        self._released = threading.Event()
        self._stalling = False
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler_class())
        self._server.daemon_threads = True
        # A short poll interval: `shutdown()` waits for the serving loop's next poll.
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.02}, name="fake-loki", daemon=True
        )

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    def respond_with(self, status: int, body: bytes | str) -> None:
        with self._lock:
            self._response = (status, body.encode() if isinstance(body, str) else body)

    def stall(self) -> None:
        """Hold every request until `release()` or the end of the `with` block."""
        self._stalling = True

    def release(self) -> None:
        self._released.set()

    def __enter__(self) -> FakeLoki:
        self._thread.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.release()
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=STALL_LIMIT_S)

    def _handle(self, handler: BaseHTTPRequestHandler) -> None:
        split = urlsplit(handler.path)
        params = {name: values[-1] for name, values in parse_qs(split.query).items()}
        headers = {name.lower(): value for name, value in handler.headers.items()}
        with self._lock:
            self.requests.append(RecordedRequest(handler.command, split.path, params, headers))
            status, body = self._response
        if self._stalling:
            self._released.wait(STALL_LIMIT_S)
        try:
            handler.send_response(status)
            handler.send_header("Content-Type", "application/json")
            handler.send_header("Content-Length", str(len(body)))
            handler.end_headers()
            handler.wfile.write(body)
        except (BrokenPipeError, ConnectionResetError):  # the client timed out and hung up
            pass

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # the name http.server dispatches to
                fake._handle(self)

            def log_message(self, format: str, *args: object) -> None:  # keep test output clean
                pass

        return Handler
