"""Latency of `tools/call score_logs` over MCP, warm: stdio and streamable HTTP against the bare call.

Run from the repository root:

    PYTHONPATH=. .venv/bin/python benchmarks/mcp_bench.py [--calls 300] [--warmup 30]

One sample (the retry storm of examples/payment-incident.log, 12 lines) is scored again and again,
so the detector's caches are warm and what differs between the rows is the surface around the
same tool call:

- bare: `REGISTRY["score_logs"].call(...)` in this process (the baseline).
- in-memory: the SDK's in-process client against the MCP server (the SDK's own cost).
- stdio: `logtriage mcp --via local` as a subprocess.
- HTTP: `logtriage serve` as a subprocess, its /mcp endpoint.
- stdio forwarded: `logtriage mcp` while that server holds the store, so each call goes on to /mcp.

stdio and HTTP are each measured twice: with a raw JSON-RPC client (one line on the pipe, one POST
on a kept-alive connection), which times the server and the transport alone, and with the Python
SDK's client, which adds its own work (task groups, streams, and validating every result against
the output schema). Servers run in their own processes, as an IDE and `logtriage serve` would, each
with its own temporary data dir and no LLM. Goal: stdio and HTTP within 10 ms of the bare call, p50
and p95.
Progress goes to stderr; the last line of stdout is one JSON object with every figure.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import anyio
import httpx
import httpx2
from bench_common import OUT, REPO_ROOT, machine_info, percentile_ms, show_table, status
from mcp import Client, StdioServerParameters
from mcp.client.streamable_http import streamable_http_client

from detectors import Detector
from integrations.mcp_server import LocalUser, local_server
from tools import REGISTRY, Caller, ToolContext

GOAL_OVERHEAD_MS = 10.0
EXAMPLE = REPO_ROOT / "examples" / "payment-incident.log"
LOGTRIAGE = str(Path(sys.executable).with_name("logtriage"))
TOKEN = "bench-token"
STARTUP_S = 120.0
PROTOCOL = "2025-11-25"  # the raw clients speak the handshake era, as most IDE clients do today

Call = Callable[[], Awaitable[object]]


def sample() -> list[str]:
    return EXAMPLE.read_text().splitlines()[12:]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


async def timed(call: Call, calls: int, warmup: int) -> list[float]:
    for _ in range(warmup):
        await call()
    seconds = []
    for _ in range(calls):
        started = time.perf_counter()
        await call()
        seconds.append(time.perf_counter() - started)
    return seconds


async def through(client: Client, lines: list[str], calls: int, warmup: int) -> list[float]:
    async def call() -> object:
        result = await client.call_tool("score_logs", {"lines": lines})
        if result.is_error or not result.structured_content:
            raise RuntimeError(f"score_logs failed: {result.content}")
        return result

    return await timed(call, calls, warmup)


INITIALIZE = {
    "jsonrpc": "2.0",
    "id": 0,
    "method": "initialize",
    "params": {
        "protocolVersion": PROTOCOL,
        "capabilities": {},
        "clientInfo": {"name": "bench", "version": "0"},
    },
}


def tools_call(request_id: int, lines: list[str]) -> dict[str, Any]:
    params = {"name": "score_logs", "arguments": {"lines": lines}}
    return {"jsonrpc": "2.0", "id": request_id, "method": "tools/call", "params": params}


def checked(reply: dict[str, Any]) -> dict[str, Any]:
    result: dict[str, Any] | None = reply.get("result")
    if result is None or result.get("isError") or not result.get("structuredContent"):
        raise RuntimeError(f"score_logs failed: {str(reply)[:500]}")
    return result


async def raw_stdio(env: dict[str, str], lines: list[str], calls: int, warmup: int) -> list[float]:
    """JSON-RPC lines on the pipes of `logtriage mcp --via local`, one request at a time."""
    process = subprocess.Popen(
        [LOGTRIAGE, "mcp", "--via", "local"],
        env=env,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert process.stdin is not None and process.stdout is not None
    pipe_in, pipe_out = process.stdin, process.stdout

    def send(message: dict[str, Any]) -> None:
        pipe_in.write(json.dumps(message) + "\n")
        pipe_in.flush()

    try:
        send(INITIALIZE)
        pipe_out.readline()  # waits for the detector to load
        send({"jsonrpc": "2.0", "method": "notifications/initialized"})
        ids = iter(range(1, calls + warmup + 1))

        async def call() -> object:
            send(tools_call(next(ids), lines))
            return checked(json.loads(pipe_out.readline()))

        return await timed(call, calls, warmup)
    finally:
        pipe_in.close()
        process.wait(timeout=60)


async def raw_http(url: str, lines: list[str], calls: int, warmup: int) -> list[float]:
    """JSON-RPC POSTs to /mcp on one kept-alive connection, one request at a time."""
    headers = {
        "Authorization": f"Bearer {TOKEN}",
        "Accept": "application/json, text/event-stream",
        "MCP-Protocol-Version": PROTOCOL,
    }
    async with httpx.AsyncClient(base_url=url, headers=headers, timeout=60, trust_env=False) as http:
        (await http.post("/mcp", json=INITIALIZE)).raise_for_status()
        ids = iter(range(1, calls + warmup + 1))

        async def call() -> object:
            return checked((await http.post("/mcp", json=tools_call(next(ids), lines))).json())

        return await timed(call, calls, warmup)


def server_env(data_dir: Path, port: int) -> dict[str, str]:
    return {
        **os.environ,
        "LOGTRIAGE_DATA_DIR": str(data_dir),
        "LOGTRIAGE_LLM_BACKEND": "none",
        "LOGTRIAGE_API_TOKEN": TOKEN,
        "LOGTRIAGE_PORT": str(port),
    }


@contextmanager
def serve_process(data_dir: Path, port: int) -> Iterator[str]:
    """`logtriage serve` in a subprocess until it is ready; yields its base URL."""
    log = (data_dir.parent / "serve.log").open("w")
    process = subprocess.Popen([LOGTRIAGE, "serve"], env=server_env(data_dir, port), stdout=log, stderr=log)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + STARTUP_S
        while True:
            try:
                if httpx.get(f"{url}/readyz", timeout=1.0).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"logtriage serve did not become ready; see {log.name}")
            time.sleep(0.2)  # polling interval
        yield url
    finally:
        process.terminate()
        process.wait(timeout=60)
        log.close()


async def measure(args: argparse.Namespace, work: Path) -> dict[str, list[float]]:
    lines = sample()
    status("loading the detector")
    detector = Detector.load(cache_path=work / "bare-cache.sqlite")
    ctx = ToolContext(detector=detector)
    caller = Caller(user="bench@mcp", source="mcp", authenticated=True)
    spec = REGISTRY["score_logs"]

    async def bare() -> object:
        return spec.call(ctx, {"lines": lines}, caller)

    runs: dict[str, list[float]] = {}
    status("bare tool calls")
    runs["bare"] = await timed(bare, args.calls, args.warmup)
    status("in-memory MCP client")
    async with Client(local_server(lambda: ctx, LocalUser("bench"))) as memory:
        runs["in-memory"] = await through(memory, lines, args.calls, args.warmup)

    status("stdio, raw JSON-RPC: starting `logtriage mcp --via local`")
    runs["stdio (raw JSON-RPC)"] = await raw_stdio(
        server_env(work / "stdio-raw-data", free_port()), lines, args.calls, args.warmup
    )
    status("stdio, SDK client: starting `logtriage mcp --via local`")
    local = StdioServerParameters(
        command=LOGTRIAGE, args=["mcp", "--via", "local"], env=server_env(work / "stdio-data", free_port())
    )
    async with Client(local, read_timeout_seconds=STARTUP_S) as stdio:
        runs["stdio (SDK client)"] = await through(stdio, lines, args.calls, args.warmup)

    status("HTTP: starting `logtriage serve`")
    port = free_port()
    served = work / "served-data"
    with serve_process(served, port) as url:
        runs["HTTP (raw JSON-RPC)"] = await raw_http(url, lines, args.calls, args.warmup)
        headers = {"Authorization": f"Bearer {TOKEN}"}
        async with httpx2.AsyncClient(headers=headers) as http:
            async with Client(streamable_http_client(f"{url}/mcp", http_client=http)) as remote:
                runs["HTTP (SDK client)"] = await through(remote, lines, args.calls, args.warmup)
        status("stdio forwarded to the server that holds the store")
        forwarded = StdioServerParameters(command=LOGTRIAGE, args=["mcp"], env=server_env(served, port))
        async with Client(forwarded, read_timeout_seconds=STARTUP_S) as stdio:
            runs["stdio forwarded (SDK client)"] = await through(
                stdio, lines, args.forwarded_calls, args.warmup
            )
    return runs


def report(runs: dict[str, list[float]]) -> dict[str, Any]:
    figures: dict[str, Any] = {
        name: {"p50_ms": percentile_ms(s, 50), "p95_ms": percentile_ms(s, 95), "calls": len(s)}
        for name, s in runs.items()
    }
    bare = figures["bare"]
    rows = []
    for name, fig in figures.items():
        over50 = round(fig["p50_ms"] - bare["p50_ms"], 3)
        over95 = round(fig["p95_ms"] - bare["p95_ms"], 3)
        fig |= {"over_bare_p50_ms": over50, "over_bare_p95_ms": over95}
        goal = name.startswith(("stdio (", "HTTP ("))
        met = goal and over50 <= GOAL_OVERHEAD_MS and over95 <= GOAL_OVERHEAD_MS
        rows.append(
            (
                f"{name}: p50 / p95 (over bare)",
                f"{fig['p50_ms']:.2f} / {fig['p95_ms']:.2f} ms (+{over50:.2f} / +{over95:.2f})",
                f"within {GOAL_OVERHEAD_MS:.0f} ms of bare" if goal else "",
                met if goal else None,
            )
        )
    show_table("tools/call score_logs, warm (12 lines)", rows)
    return {"goal_overhead_ms": GOAL_OVERHEAD_MS, "latency": figures, "machine": machine_info()}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--calls", type=int, default=300, help="measured calls per surface")
    parser.add_argument("--forwarded-calls", type=int, default=100, help="measured calls, stdio forwarded")
    parser.add_argument("--warmup", type=int, default=30, help="unmeasured calls first, per surface")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="logtriage-mcp-bench-") as tmp:
        runs = anyio.run(measure, args, Path(tmp))
    OUT.print(json.dumps(report(runs)))


if __name__ == "__main__":
    main()
