"""Serving an ASGI app for tests that need a real HTTP client or a real peer (Alertmanager, MCP)."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import uvicorn

STARTUP_S = 30.0


@contextmanager
def serving(app: Any, port: int = 0) -> Iterator[str]:
    """`app` served by uvicorn in a thread, on a socket bound here (so the port is ours). A given
    `port` is reusable at once, so a later server (a restart) can take the same one."""
    # proto must say TCP, or asyncio leaves Nagle on and each response waits for a delayed ACK.
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    if port:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", port))
    served = uvicorn.Server(uvicorn.Config(app, log_level="warning"))
    thread = threading.Thread(target=served.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + STARTUP_S
    while not served.started:
        assert time.monotonic() < deadline and thread.is_alive(), "uvicorn did not start"
        time.sleep(0.02)  # the polling interval, not a wait for the work itself
    try:
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    finally:
        served.should_exit = True
        thread.join(timeout=30)
        sock.close()
