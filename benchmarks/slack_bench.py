"""Time from a Slack event to the first answer in Slack: the mention's POST to the first chat.postMessage.

Run from the repository root:

    PYTHONPATH=. .venv/bin/python benchmarks/slack_bench.py [--events 60] [--warmup 5] [--llm none]

`logtriage serve`'s app runs in this process under uvicorn on loopback, with Slack configured, the
shipped detector, the embedded incident store and a temporary data dir. Slack's Web API is the
tests' fake (tests/integrations/fake_slack.py), also on loopback, which records when each call
arrives. Each event is an `app_mention` with logs in a code block, signed with the signing
secret and POSTed to /slack/events as Slack would; the clock runs from just before the POST to the
moment the fake receives the chat.postMessage of the answer in that thread. Events go one at a
time (the next is sent once the answer is in).

- fresh logs: synthetic sequences (`generate(seed=...)`), every one new to the incident memory,
  with new ids and numbers; their templates may be known or not, as in real pastes.
- known logs: the example incident pasted again (the window cache is warm).

For scale, every event's logs also go through `Assistant.triage` alone, in this process, on a
second detector with cold caches of its own, right before the event (so both see the same load):
the time to its `on_verdict` callback is what the Slack path adds to. `--no-baseline` skips it.

The ack (the HTTP response to Slack's POST) is timed too: Slack gives up after 3 s. With
`--llm local` the explanations of earlier events run on the CPU while later events are timed, as
they would in production; the default (`none`) times the path alone. Goal: the first
chat.postMessage within 1 s, p50 and p95. Progress goes to stderr; the last line of stdout is one
JSON object with every figure.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
from bench_common import OUT, REPO_ROOT, machine_info, percentile_ms, show_table, status

from detectors.synthetic import generate
from integrations.server import create_app
from integrations.server_deps import assemble, slack_deps
from integrations.settings import Settings
from integrations.wiring import build_assistant, chat_model, load_detector, open_incident_store
from tests.integrations.fake_slack import FakeSlack
from tests.integrations.loopback import serving
from tests.integrations.slack_support import signed_headers
from tools import Caller

GOAL_S = 1.0
EXAMPLE = REPO_ROOT / "examples" / "payment-incident.log"
SECRET = "bench-signing-secret"
CHANNEL = "C0BENCH"
ANSWER_TIMEOUT_S = 120.0


def mention(text: str, ts: str, event_id: str) -> str:
    event = {
        "type": "app_mention",
        "user": "U0BENCH",
        "text": f"<@UBOT> ```{text}```",
        "ts": ts,
        "channel": CHANNEL,
    }
    envelope = {"type": "event_callback", "team_id": "T1", "api_app_id": "A0BENCH", "event": event}
    return json.dumps({**envelope, "event_id": event_id, "event_time": int(time.time())})


def samples(events: int, seed: int) -> list[tuple[str, str]]:
    """(kind, log text) for each event: fresh synthetic sequences, every third one the known example."""
    fresh = (s.lines for s in generate(events, seed=seed))
    known = EXAMPLE.read_text()
    return [("known", known) if i % 3 == 2 else ("fresh", "\n".join(next(fresh))) for i in range(events)]


def one_event(http: httpx.Client, fake: FakeSlack, text: str, n: int) -> tuple[float, float]:
    """(seconds to the ack, seconds to the first chat.postMessage in the event's thread)."""
    ts = f"1710000000.{n:06d}"
    body = mention(text, ts, f"Ev{n:08d}")
    started = time.perf_counter()
    response = http.post(
        "/slack/events", content=body, headers=signed_headers(body, "application/json", secret=SECRET)
    )
    acked = time.perf_counter() - started
    if response.status_code != 200:
        raise RuntimeError(f"/slack/events answered {response.status_code}: {response.text[:200]}")
    (posted,) = fake.wait_for(
        "chat.postMessage", where=lambda c: c.args.get("thread_ts") == ts, timeout=ANSWER_TIMEOUT_S
    )
    return acked, posted.at - started


def bare_assistant(work: Path) -> Callable[[str], float]:
    """Seconds from `Assistant.triage` to its `on_verdict`, on a detector and store of its own."""
    settings = Settings(data_dir=work / "bare", llm_backend="none")
    detector = load_detector(settings)
    assistant = build_assistant(settings, detector, open_incident_store(settings, detector), None)
    caller = Caller(user="U0BENCH", source="slack", authenticated=True)
    threads = iter(range(1_000_000))

    def verdict_seconds(text: str) -> float:
        seen: list[float] = []
        started = time.perf_counter()
        assistant.triage(
            text,
            thread_id=f"bare-{next(threads)}",
            caller=caller,
            remember=True,
            on_verdict=lambda _: seen.append(time.perf_counter()),
        )
        return seen[0] - started

    return verdict_seconds


def measure(args: argparse.Namespace, work: Path) -> dict[str, list[float]]:
    fake = FakeSlack()
    runs: dict[str, list[float]] = {
        kind: [] for kind in ("fresh", "known", "ack", "bare fresh", "bare known")
    }
    with serving(fake.app) as api:
        fake.url = api
        settings = Settings(
            data_dir=work / "data",
            llm_backend=args.llm,
            slack_bot_token="xoxb-bench",  # type: ignore[arg-type]
            slack_signing_secret=SECRET,  # type: ignore[arg-type]
            slack_api_url=fake.api_url,
        )
        status("loading the detector, the incident store and the assistant")
        detector = load_detector(settings)
        store = open_incident_store(settings, detector)
        assistant = build_assistant(settings, detector, store, chat_model(settings))
        deps = assemble(settings, detector, store, assistant, slack=slack_deps(settings, assistant))
        bare = None if args.no_baseline else bare_assistant(work)
        try:
            with serving(create_app(settings, deps)) as url, httpx.Client(base_url=url, timeout=60) as http:
                plan = samples(args.warmup + args.events, args.seed)
                status(f"{args.warmup} warm-up events, then {args.events} timed ones")
                for n, (kind, text) in enumerate(plan):
                    baseline = bare(text) if bare is not None else None
                    acked, first_post = one_event(http, fake, text, n)
                    if n < args.warmup:
                        continue
                    runs[kind].append(first_post)
                    runs["ack"].append(acked)
                    if baseline is not None:
                        runs[f"bare {kind}"].append(baseline)
        finally:
            deps.queue.close()
            deps.close()
    return runs


def figures(seconds: list[float]) -> dict[str, Any]:
    if not seconds:
        return {"p50_ms": None, "p95_ms": None, "events": 0}
    return {
        "p50_ms": percentile_ms(seconds, 50),
        "p95_ms": percentile_ms(seconds, 95),
        "events": len(seconds),
    }


def by_kind(runs: dict[str, list[float]], prefix: str = "") -> dict[str, dict[str, Any]]:
    fresh, known = runs[f"{prefix}fresh"], runs[f"{prefix}known"]
    return {"all": figures(fresh + known), "fresh": figures(fresh), "known": figures(known)}


def report(runs: dict[str, list[float]], llm: str) -> dict[str, Any]:
    first_post, baseline, ack = by_kind(runs), by_kind(runs, "bare "), figures(runs["ack"])
    ratio50 = round(first_post["all"]["p50_ms"] / 1000 / GOAL_S, 3)
    ratio95 = round(first_post["all"]["p95_ms"] / 1000 / GOAL_S, 3)
    rows: list[tuple[str, str, str, bool | None]] = []
    for name, fig in first_post.items():
        goal = name == "all"
        met = fig["p50_ms"] <= GOAL_S * 1000 and fig["p95_ms"] <= GOAL_S * 1000
        rows.append(
            (
                f"event → first chat.postMessage, {name} logs ({fig['events']}): p50 / p95",
                f"{fig['p50_ms']:.0f} / {fig['p95_ms']:.0f} ms",
                f"≤ {GOAL_S * 1000:.0f} ms" if goal else "",
                met if goal else None,
            )
        )
    rows.append(("ratio to the goal: p50 / p95", f"{ratio50:.3f} / {ratio95:.3f}", "≤ 1", ratio95 <= 1.0))
    rows.append(
        ("ack of the event (HTTP 200): p50 / p95", f"{ack['p50_ms']:.1f} / {ack['p95_ms']:.1f} ms", "", None)
    )
    for name, fig in baseline.items():
        if fig["events"]:
            value = f"{fig['p50_ms']:.0f} / {fig['p95_ms']:.0f} ms"
            rows.append(
                (f"baseline without Slack (triage → on_verdict), {name} logs: p50 / p95", value, "", None)
            )
    show_table(f"Slack: time to the first answer (LLM backend: {llm})", rows)
    return {
        "goal_s": GOAL_S,
        "first_post": first_post,
        "ratio_to_goal_p50": ratio50,
        "ratio_to_goal_p95": ratio95,
        "ack": ack,
        "baseline_without_slack": baseline,
        "llm": llm,
        "machine": machine_info(),
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--events", type=int, default=60, help="timed events")
    parser.add_argument("--warmup", type=int, default=5, help="untimed events first")
    parser.add_argument("--seed", type=int, default=20261122, help="seed of the synthetic logs")
    parser.add_argument("--llm", choices=("none", "local", "openai"), default="none", help="the LLM backend")
    parser.add_argument("--no-baseline", action="store_true", help="skip the Assistant.triage-alone baseline")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="logtriage-slack-bench-") as tmp:
        runs = measure(args, Path(tmp))
    # One line, however long: soft_wrap stops rich from folding it at the console width.
    OUT.print(json.dumps(report(runs, args.llm)), soft_wrap=True, markup=False)


if __name__ == "__main__":
    main()
