"""The load generator of webhook_load.py: open-loop POSTs at a fixed rate, one ack timing each.

It runs as its own process (webhook_load.py starts it), so that its CPU time does not compete with
the server for one GIL, as an Alertmanager in another process would not. A scheduler hands each
request to a pool of sender threads at its due time, whether or not earlier ones were answered
(open loop), and its latency counts from that due time (as wrk2 does): a server that falls behind
cannot hide its backlog by slowing the sender down.

The senders share one pool of keep-alive connections, one per sender, as Alertmanager reuses
its connections. (An asyncio generator with one httpx.AsyncClient was tried first: under
overload its pool spends CPU quadratic in the requests waiting, and the generator, not the
server, became the bottleneck; with threads, the requests in flight are bounded by the senders.) Requests not sent
within `give_up_s` of their due time are recorded as errors, which bounds the run in time.

    python benchmarks/webhook_load_client.py SPEC.json   # prints one JSON object on stdout

SPEC.json: {"url", "token", "rate", "timeout_s", "give_up_s", "senders", "bodies": [JSON bodies]}.
"""

from __future__ import annotations

import json
import queue
import sys
import threading
import time
from pathlib import Path
from typing import Any

import httpx

START_DELAY_S = 0.2  # lets the sender threads connect before the first due time


def send_one(client: httpx.Client, index: int, due: float, body: bytes) -> dict[str, Any]:
    sent = time.perf_counter()
    outcome: dict[str, Any] = {"index": index, "due": due, "sent": sent}
    try:
        response = client.post("/webhooks/generic", content=body)
    except httpx.HTTPError as err:
        return outcome | {
            "done": time.perf_counter(),
            "status": None,
            "error": f"{type(err).__name__}: {err}",
        }
    outcome |= {"done": time.perf_counter(), "status": response.status_code}
    if response.status_code == 202:
        ack = response.json()
        return outcome | {"accepted": ack["accepted"], "duplicates": ack["duplicates"]}
    return outcome | {"error": f"HTTP {response.status_code}: {response.text[:200]}"}


def send_all(spec: dict[str, Any], bodies: list[bytes]) -> dict[str, Any]:
    due_queue: queue.SimpleQueue[tuple[int, float] | None] = queue.SimpleQueue()
    results: list[dict[str, Any] | None] = [None] * len(bodies)
    headers = {"Authorization": f"Bearer {spec['token']}", "Content-Type": "application/json"}

    # One client shared by the sender threads (httpx.Client is thread-safe), made before the
    # schedule starts: making one per thread costs tens of ms of CPU each, which stalled the first
    # second of the run. Its pool holds a connection per sender, so no request waits for one.
    limits = httpx.Limits(max_connections=spec["senders"], max_keepalive_connections=spec["senders"])
    with httpx.Client(
        base_url=spec["url"], headers=headers, timeout=spec["timeout_s"], limits=limits, trust_env=False
    ) as client:

        def sender() -> None:
            while (item := due_queue.get()) is not None:
                index, due = item
                if time.perf_counter() - due > spec["give_up_s"]:
                    late = {"index": index, "due": due, "sent": due, "done": due, "status": None}
                    results[index] = late | {
                        "error": f"not sent: every sender busy for {spec['give_up_s']} s"
                    }
                    continue
                results[index] = send_one(client, index, due, bodies[index])

        threads = [threading.Thread(target=sender, daemon=True) for _ in range(spec["senders"])]
        for thread in threads:
            thread.start()
        wall_start, cpu_start = time.time(), time.process_time()
        start = time.perf_counter() + START_DELAY_S
        for index in range(len(bodies)):
            due = start + index / spec["rate"]
            # Pacing, not waiting for work: the schedule is the point of an open-loop generator.
            time.sleep(max(0.0, due - time.perf_counter()))
            due_queue.put((index, due))
        for _ in threads:
            due_queue.put(None)
        for thread in threads:
            thread.join()
    finished = [r for r in results if r is not None]
    # Times relative to the first due time; `epoch_start` places it on the wall clock.
    for result in finished:
        for key in ("due", "sent", "done"):
            result[key] -= start
    return {
        "epoch_start": wall_start + START_DELAY_S,
        "client_cpu_s": time.process_time() - cpu_start,
        "results": finished,
    }


def main() -> None:
    spec = json.loads(Path(sys.argv[1]).read_text())
    bodies = [json.dumps(body, separators=(",", ":")).encode() for body in spec.pop("bodies")]
    print(json.dumps(send_all(spec, bodies)))


if __name__ == "__main__":
    main()
