"""A loopback fake of an OpenAI-compatible server (vLLM, Ollama), for tests of the openai backend.

Remote LLM servers are a boundary tests cannot reach, so this serves the real wire protocol on
127.0.0.1 instead: ``POST /v1/chat/completions`` (plain JSON, or SSE when the request says
``"stream": true``) and ``GET /v1/models``. Replies come from a script, one per completion request,
and every request is recorded with its headers and parsed JSON body::

    with FakeOpenAIServer() as server:
        server.script([tool_reply(FakeToolCall("score_logs", {"text": "..."})), "It is a timeout."])
        model = openai_chat_model(OpenAIBackendConfig(base_url=server.url, model="qwen"))
        ...
        assert server.requests[0].body["model"] == "qwen"

A script entry is a `FakeReply` or a plain string (a text reply). When the script runs out the
server answers 500 with a message saying so, which the client raises.
"""

from __future__ import annotations

import json
import re
import threading
from collections import deque
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any

# The longest a stalled reply holds its handler thread if the test never releases it.
STALL_LIMIT_S = 30.0


@dataclass(frozen=True)
class FakeToolCall:
    name: str
    args: Mapping[str, Any]
    id: str = ""  # "" numbers it: call_0, call_1, ...


@dataclass(frozen=True)
class FakeReply:
    """One scripted answer. Build it with `text_reply`, `tool_reply`, `error_reply` or `stalled_reply`."""

    pieces: tuple[str, ...] = ()  # the content, as the stream's chunks; joined when not streaming
    tool_calls: tuple[FakeToolCall, ...] = ()
    status: int = 200
    error_message: str = ""
    stall: bool = False  # hold the answer until `release()` (or the server closes)

    @property
    def content(self) -> str:
        return "".join(self.pieces)


@dataclass(frozen=True)
class RecordedRequest:
    method: str
    path: str
    headers: Mapping[str, str]  # names lower-cased
    body: Mapping[str, Any]  # the parsed JSON body; {} for a GET


def text_reply(content: str, pieces: Sequence[str] | None = None) -> FakeReply:
    """A plain answer. Streamed, it arrives word by word, or as `pieces` (which must join to it)."""
    if pieces is None:
        words = re.findall(r"\s*\S+", content)
        trailing = content[len("".join(words)) :]
        pieces = [*words, trailing] if trailing else words
    chunks = tuple(pieces)
    if "".join(chunks) != content:
        raise ValueError(f"pieces {chunks!r} do not join to the content {content!r}")
    return FakeReply(pieces=chunks)


def tool_reply(*calls: FakeToolCall, content: str = "") -> FakeReply:
    """An answer that calls tools, as OpenAI `tool_calls` (finish_reason "tool_calls")."""
    return FakeReply(pieces=(content,) if content else (), tool_calls=calls)


def error_reply(status: int, message: str = "fake server error") -> FakeReply:
    """An HTTP error with an OpenAI-style error body."""
    return FakeReply(status=status, error_message=message)


def stalled_reply(content: str = "too late") -> FakeReply:
    """An answer held back until `FakeOpenAIServer.release()`: the client's timeout fires first."""
    return FakeReply(pieces=(content,), stall=True)


@dataclass
class _State:
    models: tuple[str, ...]
    replies: deque[FakeReply] = field(default_factory=deque)
    requests: list[RecordedRequest] = field(default_factory=list)
    release: threading.Event = field(default_factory=threading.Event)
    lock: threading.Lock = field(default_factory=threading.Lock)
    completions: int = 0


class _Server(ThreadingHTTPServer):
    daemon_threads = True  # a handler still stalled at shutdown must not block the test run

    def __init__(self, state: _State) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.state = state


class FakeOpenAIServer:
    """The fake server as a context manager; `url` is the base URL, ending in ``/v1``.

    `models` are what ``GET /v1/models`` lists; completions answer for whatever model is asked.
    """

    def __init__(self, models: Sequence[str] = ("fake-model",)) -> None:
        self._state = _State(models=tuple(models))
        self._server = _Server(self._state)
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05})

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}/v1"

    @property
    def requests(self) -> list[RecordedRequest]:
        """Every request so far, in arrival order (a copy)."""
        with self._state.lock:
            return list(self._state.requests)

    def script(self, replies: Sequence[FakeReply | str]) -> None:
        """Queue replies for the next completion requests, after any still queued."""
        with self._state.lock:
            self._state.replies.extend(text_reply(r) if isinstance(r, str) else r for r in replies)

    def release(self) -> None:
        """Let stalled replies go (to a client that has usually given up by then)."""
        self._state.release.set()

    def __enter__(self) -> FakeOpenAIServer:
        self._thread.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.release()
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)


class _Handler(BaseHTTPRequestHandler):
    server: _Server

    @property
    def state(self) -> _State:
        return self.server.state

    def log_message(self, format: str, *args: Any) -> None:
        pass  # keep pytest output clean; requests are recorded instead

    def do_GET(self) -> None:
        self._record({})
        if self.path.rstrip("/") == "/v1/models":
            data = [
                {"id": name, "object": "model", "created": 0, "owned_by": "fake"}
                for name in self.state.models
            ]
            self._send_json(200, {"object": "list", "data": data})
        else:
            self._send_error(404, f"no route GET {self.path}")

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        try:
            body = json.loads(self.rfile.read(length) or b"{}")
        except json.JSONDecodeError as error:
            self._record({})
            self._send_error(400, f"body is not JSON: {error}")
            return
        self._record(body)
        if self.path.rstrip("/") != "/v1/chat/completions":
            self._send_error(404, f"no route POST {self.path}")
            return
        with self.state.lock:
            index = self.state.completions
            self.state.completions += 1
            reply = self.state.replies.popleft() if self.state.replies else None
        if reply is None:
            self._send_error(500, f"fake server: no scripted reply left for completion request #{index}")
            return
        if reply.stall:
            self.state.release.wait(timeout=STALL_LIMIT_S)
        try:
            self._answer(reply, body, index)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client timed out and hung up, which is what a stall is for

    def _answer(self, reply: FakeReply, body: Mapping[str, Any], index: int) -> None:
        if reply.status != 200:
            self._send_error(reply.status, reply.error_message)
        elif body.get("stream"):
            include_usage = bool((body.get("stream_options") or {}).get("include_usage"))
            self._send_stream(_stream_chunks(reply, str(body.get("model", "")), index, include_usage))
        else:
            self._send_json(200, _completion(reply, str(body.get("model", "")), index))

    def _record(self, body: Mapping[str, Any]) -> None:
        headers = {name.lower(): value for name, value in self.headers.items()}
        with self.state.lock:
            self.state.requests.append(RecordedRequest(self.command, self.path, headers, body))

    def _send_json(self, status: int, payload: Mapping[str, Any]) -> None:
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _send_error(self, status: int, message: str) -> None:
        error = {"message": message, "type": "server_error" if status >= 500 else "invalid_request_error"}
        self._send_json(status, {"error": {**error, "param": None, "code": None}})

    def _send_stream(self, chunks: Iterator[Mapping[str, Any]]) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Cache-Control", "no-cache")
        self.end_headers()  # HTTP/1.0: the stream ends when the connection closes
        for chunk in chunks:
            self.wfile.write(f"data: {json.dumps(chunk)}\n\n".encode())
            self.wfile.flush()
        self.wfile.write(b"data: [DONE]\n\n")


def _tool_call_id(call: FakeToolCall, position: int) -> str:
    return call.id or f"call_{position}"


def _usage(reply: FakeReply) -> dict[str, int]:
    completion = max(1, len(reply.pieces) + len(reply.tool_calls))
    return {"prompt_tokens": 10, "completion_tokens": completion, "total_tokens": 10 + completion}


def _completion(reply: FakeReply, model: str, index: int) -> dict[str, Any]:
    message: dict[str, Any] = {"role": "assistant", "content": reply.content or None}
    if reply.tool_calls:
        message["tool_calls"] = [
            {
                "id": _tool_call_id(call, position),
                "type": "function",
                "function": {"name": call.name, "arguments": json.dumps(dict(call.args))},
            }
            for position, call in enumerate(reply.tool_calls)
        ]
    choice = {
        "index": 0,
        "message": message,
        "finish_reason": "tool_calls" if reply.tool_calls else "stop",
        "logprobs": None,
    }
    return {
        "id": f"chatcmpl-fake-{index}",
        "object": "chat.completion",
        "created": 0,
        "model": model,
        "choices": [choice],
        "usage": _usage(reply),
    }


def _stream_chunks(reply: FakeReply, model: str, index: int, include_usage: bool) -> Iterator[dict[str, Any]]:
    def chunk(delta: dict[str, Any], finish_reason: str | None = None) -> dict[str, Any]:
        choice = {"index": 0, "delta": delta, "finish_reason": finish_reason, "logprobs": None}
        return {
            "id": f"chatcmpl-fake-{index}",
            "object": "chat.completion.chunk",
            "created": 0,
            "model": model,
            "choices": [choice],
        }

    yield chunk({"role": "assistant", "content": ""})
    for piece in reply.pieces:
        yield chunk({"content": piece})
    for position, call in enumerate(reply.tool_calls):
        # As vLLM streams them: the name first, then the arguments in two parts.
        head = {"index": position, "id": _tool_call_id(call, position), "type": "function"}
        yield chunk({"tool_calls": [{**head, "function": {"name": call.name, "arguments": ""}}]})
        arguments = json.dumps(dict(call.args))
        middle = len(arguments) // 2
        for part in (arguments[:middle], arguments[middle:]):
            yield chunk({"tool_calls": [{"index": position, "function": {"arguments": part}}]})
    yield chunk({}, "tool_calls" if reply.tool_calls else "stop")
    if include_usage:
        yield {
            "id": f"chatcmpl-fake-{index}",
            "object": "chat.completion.chunk",
            "created": 0,
            "model": model,
            "choices": [],
            "usage": _usage(reply),
        }
