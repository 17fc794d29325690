"""Load benchmark of the alert webhooks: ack latency under a fixed rate, then the triage backlog.

Run from the repository root:

    PYTHONPATH=. .venv/bin/python benchmarks/webhook_load.py [--quick] [--no-llm] [--rate 200 --seconds 30]

`logtriage serve`'s app runs in this process under uvicorn on loopback, with the shipped detector,
the embedded incident store and a temporary data dir. A separate process (webhook_load_client.py)
POSTs generic-webhook alerts, each with its own labels (so its own fingerprint) and inline logs
cut from examples/payment-incident.log, at a fixed rate, open loop. Then the alert queue is
drained and every accepted alert must have been triaged exactly once: as many jobs done as alerts
accepted, none failed, one notice and one stored incident per alert.

- pass "llm off": `alert_explain=False`, the default `--rate` for `--seconds`.
- pass "llm on": `alert_explain=True` with the local default LLM; only `--llm-alerts` alerts,
  since each explanation takes seconds on CPU. `--no-llm` skips it.

Goal: the webhook acks (202) within 50 ms at p99. Nothing leaves the machine: the server listens
on 127.0.0.1, the LLM is local, and notices are counted instead of sent.
Progress goes to stderr; the last line of stdout is one JSON object with every figure.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import uvicorn
from bench_common import OUT, REPO_ROOT, machine_info, percentile_ms, show_table, status

from detectors import Detector
from integrations.notifier import IncidentNotice
from integrations.server import create_app
from integrations.server_deps import ServerDeps, assemble
from integrations.server_runtime import settle_for_serving
from integrations.settings import Settings, default_data_dir
from integrations.wiring import build_assistant, chat_model, load_detector, open_incident_store
from knowledge.records import IncidentFilter

GOALS = {"ack_p99_ms": 50.0}
EXAMPLE = REPO_ROOT / "examples" / "payment-incident.log"
CLIENT = Path(__file__).with_name("webhook_load_client.py")
TOKEN = "bench-token"
LOOPBACK = "127.0.0.1"
STARTUP_S = 30.0
REQUEST_TIMEOUT_S = 30.0
# Sender threads, each with one keep-alive connection: at 200 requests/s and acks within 50 ms,
# about 10 are busy at once; the rest absorb a stalled server until GIVE_UP_S.
SENDERS = 64
GIVE_UP_S = 60.0  # a request still unsent this long after its due time is an error


@dataclass(frozen=True)
class Pass:
    name: str
    rate: float  # requests per second, one alert each
    count: int  # alerts sent
    explain: bool  # LLM explanations (alert_explain) with the local model


class CountingNotifier:
    """The outbound boundary: counts notices per alert group instead of sending them."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.per_group: Counter[str] = Counter()
        self.verdicts: Counter[str] = Counter()
        self.triage_status: Counter[str] = Counter()
        self.explained = 0  # notices carrying LLM text after the grounded summary
        self.last_at = 0.0  # time.time() of the latest notice

    def reset(self) -> None:
        with self.lock:
            self.per_group.clear()
            self.verdicts.clear()
            self.triage_status.clear()
            self.explained = 0

    def notify(self, notice: IncidentNotice) -> None:
        with self.lock:
            self.per_group[notice.group_key or ""] += 1
            self.verdicts[str(notice.verdict)] += 1
            self.triage_status[notice.triage_status] += 1
            self.explained += "\n\n" in (notice.explanation or "")
            self.last_at = time.time()


def alert_bodies(count: int, tag: str, seed: int) -> list[dict[str, Any]]:
    """`count` generic-webhook bodies, one alert each, with distinct labels and varied logs."""
    lines = EXAMPLE.read_text().splitlines()
    rng = random.Random(seed)
    bodies = []
    for i in range(count):
        start = rng.randrange(0, len(lines) - 6)
        window = lines[start : start + rng.randrange(6, len(lines) - start + 1)]
        # New ids and numbers in every alert: the same templates, never the same text.
        varied = [re.sub(r"\d{3,}", lambda m: str(rng.randrange(10 ** len(m[0]))), line) for line in window]
        alert = {
            "name": rng.choice(("CheckoutErrors", "OrderDbRetries", "PaymentLatency")),
            "labels": {"service": rng.choice(("orders", "payment", "checkout")), "run": tag, "seq": str(i)},
            "logs": varied,
        }
        bodies.append({"alerts": [alert]})
    return bodies


@contextmanager
def serving(deps: ServerDeps) -> Iterator[str]:
    """The app under uvicorn in a thread, on a loopback socket bound here; yields its URL."""
    # proto must say TCP: asyncio sets TCP_NODELAY only on sockets whose proto is IPPROTO_TCP, and
    # socket.socket() leaves it 0, so every response would wait ~40 ms on Nagle and delayed ACKs.
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.bind((LOOPBACK, 0))
    port = sock.getsockname()[1]
    # As `logtriage serve` runs it: the interpreter settled once the dependencies are loaded, then
    # uvicorn's defaults (asyncio loop, h11), no access log.
    settle_for_serving()
    server = uvicorn.Server(uvicorn.Config(create_app(deps.settings, deps), log_level="warning"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + STARTUP_S
        while not server.started:
            if time.monotonic() > deadline or not thread.is_alive():
                raise RuntimeError(f"uvicorn did not start within {STARTUP_S:.0f} s")
            time.sleep(0.05)  # polling interval
        yield f"http://{LOOPBACK}:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=60)
        sock.close()


def warm_up(url: str, deps: ServerDeps, notifier: CountingNotifier) -> dict[str, int]:
    """Requests through auth, routing and validation, then one alert with every template of the
    example triaged: the first triage encodes templates and imports lazily, stalling the server
    for a few hundred ms, a once-per-process cost kept out of the steady-state figures. Returns
    the queue's and the store's counts after it, to subtract."""
    headers = {"Authorization": f"Bearer {TOKEN}"}
    alert = {"name": "WarmUp", "labels": {"run": "warm-up"}, "logs": EXAMPLE.read_text().splitlines()}
    with httpx.Client(base_url=url, headers=headers, timeout=REQUEST_TIMEOUT_S, trust_env=False) as client:
        for _ in range(20):
            invalid = client.post("/webhooks/generic", json={"alerts": []})
            if invalid.status_code != 422:
                raise RuntimeError(f"warm-up expected 422, got {invalid.status_code}: {invalid.text[:200]}")
        accepted = client.post("/webhooks/generic", json={"alerts": [alert]})
        if accepted.status_code != 202:
            raise RuntimeError(f"warm-up alert refused: {accepted.status_code} {accepted.text[:200]}")
    if not deps.workers.drain(timeout=STARTUP_S + deps.settings.llm_budget_s):
        raise RuntimeError("the warm-up alert was not triaged in time")
    notifier.reset()
    return deps.queue.counts() | {"incidents": deps.store.count(IncidentFilter(source="webhook"))}


def build_deps(
    settings: Settings, detector: Detector, notifier: CountingNotifier, with_llm: bool
) -> ServerDeps:
    store = open_incident_store(settings, detector)
    model = chat_model(settings, on_status=status) if with_llm else None
    assistant = build_assistant(settings, detector, store, model)
    return assemble(settings, detector, store, assistant, outbound=notifier)


def send_load(url: str, rate: float, bodies: list[dict[str, Any]], spec_path: Path) -> dict[str, Any]:
    """Run the load generator process; its JSON result."""
    spec = {
        "url": url,
        "token": TOKEN,
        "rate": rate,
        "timeout_s": REQUEST_TIMEOUT_S,
        "give_up_s": GIVE_UP_S,
        "senders": SENDERS,
        "bodies": bodies,
    }
    spec_path.write_text(json.dumps(spec))
    done = subprocess.run(
        [sys.executable, str(CLIENT), str(spec_path)], capture_output=True, text=True, check=False
    )
    if done.returncode != 0:
        raise RuntimeError(f"the load generator failed ({done.returncode}): {done.stderr[-2000:]}")
    outcome: dict[str, Any] = json.loads(done.stdout)
    return outcome


def ack_figures(results: list[dict[str, Any]]) -> dict[str, Any]:
    """Latency from each request's scheduled time (wrk2-style) and from its actual send."""
    answered = [r for r in results if r["status"] is not None]
    from_due = [r["done"] - r["due"] for r in answered]
    from_sent = [r["done"] - r["sent"] for r in answered]
    lag = [r["sent"] - r["due"] for r in results]
    span = max(r["sent"] for r in results) - min(r["sent"] for r in results)
    errors = Counter(r.get("error", "")[:80] for r in results if r.get("error"))
    return {
        "sent": len(results),
        "accepted": sum(r.get("accepted", 0) for r in results),
        "duplicates": sum(r.get("duplicates", 0) for r in results),
        "errors": sum(errors.values()),
        "error_kinds": dict(errors.most_common(5)),
        "achieved_rate": round((len(results) - 1) / span, 1) if span > 0 else None,
        "ack_p50_ms": percentile_ms(from_due, 50) if answered else None,
        "ack_p99_ms": percentile_ms(from_due, 99) if answered else None,
        "ack_max_ms": percentile_ms(from_due, 100) if answered else None,
        "ack_from_send_p99_ms": percentile_ms(from_sent, 99) if answered else None,
        "send_lag_p99_ms": percentile_ms(lag, 99),
        "last_ack_s": max(r["done"] for r in results),
    }


def webhook_histogram(deps: ServerDeps) -> tuple[float, float, float]:
    """(requests, seconds, requests within 50 ms) of /webhooks/generic in the server's histogram."""
    count = total = within = 0.0
    for family in deps.metrics.latency.collect():
        for sample in family.samples:
            if sample.labels.get("route") != "/webhooks/generic":
                continue
            if sample.name.endswith("_count"):
                count = sample.value
            elif sample.name.endswith("_sum"):
                total = sample.value
            elif sample.name.endswith("_bucket") and sample.labels.get("le") == "0.05":
                within = sample.value
    return count, total, within


def server_side(before: tuple[float, float, float], after: tuple[float, float, float]) -> dict[str, Any]:
    """The server's own timing of the load's requests (the warm-up's taken out): mean, share ≤ 50 ms."""
    count, total, within = (a - b for a, b in zip(after, before, strict=True))
    return {
        "server_mean_ms": round(1000 * total / count, 2) if count else None,
        "server_within_50ms": round(within / count, 4) if count else None,
    }


def run_pass(
    plan: Pass, detector: Detector, root: Path, models_dir: Path | None, drain_timeout: float
) -> dict[str, Any]:
    data_dir = root / plan.name.replace(" ", "-")
    data_dir.mkdir(parents=True)
    if plan.explain and models_dir is not None:
        # chat_model caches the converted weights under data_dir/models: reuse an existing cache.
        (data_dir / "models").symlink_to(models_dir.resolve(), target_is_directory=True)
    settings = Settings(
        data_dir=data_dir,
        api_token=TOKEN,  # type: ignore[arg-type]
        llm_backend="local" if plan.explain else "none",
        alert_explain=plan.explain,
        alert_queue_capacity=max(10_000, plan.count + 1),
    )
    notifier = CountingNotifier()
    deps = build_deps(settings, detector, notifier, plan.explain)
    bodies = alert_bodies(plan.count, plan.name, seed=7)
    figures: dict[str, Any] = {
        "rate": plan.rate,
        "seconds": plan.count / plan.rate,
        "explain": plan.explain,
        "alert_workers": settings.alert_workers,
        # The machine may be shared (2 cores here): other load shows up in the latencies.
        "loadavg_1m_before": round(os.getloadavg()[0], 2),
    }
    try:
        with serving(deps) as url:
            baseline = warm_up(url, deps, notifier)
            status(f"{plan.name}: sending {plan.count} alerts at {plan.rate:g}/s to {url}")
            before = webhook_histogram(deps)
            load = send_load(url, plan.rate, bodies, data_dir / "load.json")
            figures |= ack_figures(load["results"])
            figures["client_cpu_s"] = round(load["client_cpu_s"], 2)
            status(f"{plan.name}: acked, p99 {figures['ack_p99_ms']} ms; draining {deps.queue.depth()} jobs")
            acked_at = load["epoch_start"] + figures["last_ack_s"]
            drained = deps.workers.drain(timeout=drain_timeout)
            drained_at = time.time()
            figures |= server_side(before, webhook_histogram(deps))
            figures |= triage_figures(deps, notifier, figures["accepted"], drained, baseline)
            figures["drain_s"] = round(drained_at - acked_at, 2)
            triage_window = notifier.last_at - load["epoch_start"]
            figures["triage_per_s"] = (
                round(figures["jobs_done"] / triage_window, 2) if triage_window > 0 else None
            )
    finally:
        deps.close()
    return figures


def triage_figures(
    deps: ServerDeps, notifier: CountingNotifier, accepted: int, drained: bool, baseline: dict[str, int]
) -> dict[str, Any]:
    """Outcomes of the load's alerts alone (the warm-up's `baseline` taken out)."""
    counts = {state: n - baseline[state] for state, n in deps.queue.counts().items()}
    incidents = deps.store.count(IncidentFilter(source="webhook")) - baseline["incidents"]
    once = sorted(Counter(notifier.per_group.values()).items())
    exactly_once = (
        drained
        and counts["done"] == accepted
        and counts["failed"] == 0
        and len(notifier.per_group) == accepted
        and once == [(1, accepted)]
        and incidents == accepted
    )
    return {
        "drained": drained,
        "jobs_done": counts["done"],
        "jobs_failed": counts["failed"],
        "jobs_left": counts["pending"] + counts["in_progress"],
        "notices": sum(notifier.per_group.values()),
        "incidents": incidents,
        "exactly_once": exactly_once,
        "verdicts": dict(notifier.verdicts),
        "triage_status": dict(notifier.triage_status),
        "llm_explained": notifier.explained,
    }


def report(figures: dict[str, Any]) -> None:
    goal = GOALS["ack_p99_ms"]
    for name, f in figures["passes"].items():
        p99 = f["ack_p99_ms"]
        rows: list[tuple[str, str, str, bool | None]] = [
            ("alerts sent / accepted / duplicates / errors",
             f"{f['sent']} / {f['accepted']} / {f['duplicates']} / {f['errors']}", "0 errors", f["errors"] == 0),
            ("achieved rate", f"{f['achieved_rate']} req/s", f"{f['rate']:g} req/s", None),
            ("ack latency p50 / max (from scheduled send)", f"{f['ack_p50_ms']} / {f['ack_max_ms']} ms", "", None),
            ("ack latency p99 (from scheduled send)", f"{p99} ms", f"≤ {goal:g} ms", p99 is not None and p99 <= goal),
            ("ack p99 from actual send; sender lag p99; generator CPU",
             f"{f['ack_from_send_p99_ms']} ms; {f['send_lag_p99_ms']} ms; {f['client_cpu_s']} s", "", None),
            ("server-side mean; share ≤ 50 ms", f"{f['server_mean_ms']} ms; {f['server_within_50ms']}", "", None),
            ("drain time after the last ack", f"{f['drain_s']} s", "", f["drained"]),
            ("triage throughput (first send → last notice)", f"{f['triage_per_s']} alerts/s", "", None),
            ("jobs done / failed; notices; incidents",
             f"{f['jobs_done']} / {f['jobs_failed']}; {f['notices']}; {f['incidents']}",
             "each accepted alert once", f["exactly_once"]),
            ("verdicts; LLM-explained notices", f"{f['verdicts']}; {f['llm_explained']}", "", None),
        ]  # fmt: skip
        show_table(f"webhook load, {name}", rows)
    for name, f in figures["passes"].items():
        if f["error_kinds"]:
            OUT.print(f"{name}: errors {f['error_kinds']}")


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rate", type=float, default=200.0, help="requests per second (one alert each)")
    parser.add_argument("--seconds", type=float, default=30.0, help="how long to send, LLM-off pass")
    parser.add_argument(
        "--quick", action="store_true", help="50 requests/s for 5 s, 4 LLM alerts (a smoke test)"
    )
    parser.add_argument("--no-llm", action="store_true", help="skip the pass with LLM explanations")
    parser.add_argument("--llm-alerts", type=int, default=20, help="alerts sent in the LLM pass")
    parser.add_argument("--drain-timeout", type=float, default=600.0, help="longest wait for the backlog (s)")
    parser.add_argument(
        "--models-dir",
        type=Path,
        default=default_data_dir() / "models",
        help="an existing cache of the converted local LLM (e.g. /tmp/lt_cli_test2/models)",
    )
    args = parser.parse_args()
    if args.quick:
        args.rate, args.seconds, args.llm_alerts = 50.0, 5.0, min(args.llm_alerts, 4)
    if args.rate <= 0 or args.seconds <= 0 or args.llm_alerts < 1:
        parser.error("--rate and --seconds must be positive and --llm-alerts at least 1")
    return args


def main() -> None:
    args = parse_args()
    passes = [Pass("llm off", args.rate, max(1, round(args.rate * args.seconds)), explain=False)]
    if not args.no_llm:
        passes.append(Pass("llm on", args.rate, args.llm_alerts, explain=True))
    figures: dict[str, Any] = {"machine": machine_info(), "goals": GOALS, "passes": {}}
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        status("loading the detector")
        detector = load_detector(Settings(data_dir=root / "shared", llm_backend="none"))
        for plan in passes:
            models_dir = args.models_dir if args.models_dir.is_dir() else None
            figures["passes"][plan.name] = run_pass(plan, detector, root, models_dir, args.drain_timeout)
            status(f"{plan.name}: {json.dumps(figures['passes'][plan.name], default=str)}")
    report(figures)
    print(json.dumps(figures, default=str))


if __name__ == "__main__":
    main()
