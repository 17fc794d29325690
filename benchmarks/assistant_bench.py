"""Benchmark of the assistant: time to verdict, time to the full answer, LLM tokens/s by precision.

Run from the repository root (`make bench-assistant`):

    PYTHONPATH=. .venv/bin/python benchmarks/assistant_bench.py [--quick]

- verdict: `Assistant.triage` on the bundled example against a store of past incidents (the
  demo history plus synthetic labelled ones), until the grounded answer (verdict, evidence,
  similar incidents) is ready, without the LLM. Cold is the first call (templates not cached).
- llm: tokens/s of the default SmolLM2-135M in fp32, bf16 and int8, and answer quality against
  fp32 on the eval prompts (see bench_llm_speed.py).
- answer: the full triage answer with the default local model (int8), explanation included.

Progress goes to stderr; the last line of stdout is one JSON object with every figure.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from bench_common import OUT, REPO_ROOT, machine_info, show_table, status
from bench_llm_speed import PRECISIONS, speed_and_quality, with_precision

from assistant.explainer import LLMExplainer
from assistant.graph import AssistantDeps
from assistant.llm_local import LocalChatModel
from assistant.local_model import LocalModelConfig, load_local_model
from assistant.service import Assistant, sqlite_checkpointer
from detectors import Detector
from detectors.readers import read_sequences
from detectors.synthetic import generate
from integrations.settings import Settings, default_data_dir
from knowledge.embedding import TemplateMeanEmbedder
from knowledge.open import StoreLocation, open_store
from knowledge.store import IncidentStore
from tools import Answer, Caller, ToolContext

GOALS = {"verdict_s": 1.0, "answer_s": 8.0, "int8_speedup": 2.5}
EXAMPLE = REPO_ROOT / "examples" / "payment-incident.log"
HISTORY = REPO_ROOT / "examples" / "incident-history.jsonl"
CALLER = Caller(user="bench", source="cli", authenticated=True)


def build_store(detector: Detector, data_dir: Path, synthetic: int) -> IncidentStore:
    store = open_store(StoreLocation(data_dir=data_dir), TemplateMeanEmbedder(detector.cache))
    store.index(read_sequences(str(HISTORY), fmt="jsonl"))
    store.index(iter(generate(synthetic, seed=3)))
    status(f"store: {store.count()} incidents")
    return store


def timed_triage(assistant: Assistant, lines: list[str], thread: str) -> dict[str, float]:
    """Seconds from the call to the verdict, to the first LLM token, and to the full answer."""
    marks: dict[str, float] = {}
    start = time.perf_counter()

    def on_verdict(_: Answer) -> None:
        marks.setdefault("verdict_s", time.perf_counter() - start)

    def on_token(_: str) -> None:
        marks.setdefault("first_token_s", time.perf_counter() - start)

    answer = assistant.triage(
        lines, thread_id=thread, caller=CALLER, on_token=on_token, on_verdict=on_verdict
    )
    marks["answer_s"] = time.perf_counter() - start
    marks["status_ok"] = float(answer.status == "ok")
    return marks


def verdict_section(detector: Detector, store: IncidentStore, data_dir: Path, runs: int) -> dict[str, Any]:
    """Cold: templates never seen (a marker makes every line new). Warm: known templates in a new
    order each run (the encoder cache hits, the sequence model runs). Repeat: the same input again."""
    lines = EXAMPLE.read_text().splitlines()
    ctx = ToolContext(detector=detector, store=store)
    assistant = Assistant(
        AssistantDeps(tools=ctx, chat_model=None), sqlite_checkpointer(data_dir / "t.sqlite")
    )
    cold = timed_triage(assistant, [f"{line} cold-marker" for line in lines], "cold")["verdict_s"]
    warm = [
        timed_triage(assistant, lines[i % len(lines) :] + lines[: i % len(lines)], f"warm-{i}")["verdict_s"]
        for i in range(1, runs + 1)
    ]
    repeat = [timed_triage(assistant, lines, f"repeat-{i}")["verdict_s"] for i in range(runs)]
    return {
        "cold_s": cold,
        "warm_p50_s": statistics.median(warm),
        "warm_max_s": max(warm),
        "repeat_p50_s": statistics.median(repeat),
        "runs": runs,
    }


def answer_section(
    detector: Detector, store: IncidentStore, model: LocalChatModel, data_dir: Path, runs: int
) -> dict[str, Any]:
    lines = EXAMPLE.read_text().splitlines()
    ctx = ToolContext(detector=detector, store=store, explainer=LLMExplainer(model))
    assistant = Assistant(
        AssistantDeps(tools=ctx, chat_model=model), sqlite_checkpointer(data_dir / "a.sqlite")
    )
    timings = [timed_triage(assistant, lines, f"answer-{i}") for i in range(runs)]
    answer = assistant.triage(lines, thread_id="shown", caller=CALLER)
    return {
        "verdict_p50_s": statistics.median(t["verdict_s"] for t in timings),
        "first_token_p50_s": statistics.median(t.get("first_token_s", float("nan")) for t in timings),
        "answer_p50_s": statistics.median(t["answer_s"] for t in timings),
        "answer_max_s": max(t["answer_s"] for t in timings),
        "all_ok": all(t["status_ok"] for t in timings),
        "max_new_tokens": model.max_new_tokens,
        "explanation": (answer.explanation or "").split("\n\n")[-1][:300],
        "runs": runs,
    }


def report(figures: dict[str, Any]) -> None:
    verdict, llm, answer = figures["verdict"], figures["llm"], figures["answer"]
    rows: list[tuple[str, str, str, bool | None]] = [
        ("verdict + similar, cold (new templates)", f"{verdict['cold_s']:.2f} s", "", None),
        ("verdict + similar, same input again p50", f"{verdict['repeat_p50_s']:.3f} s", "", None),
        (
            "verdict + similar, known templates p50",
            f"{verdict['warm_p50_s']:.3f} s",
            f"≤ {GOALS['verdict_s']} s",
            verdict["warm_p50_s"] <= GOALS["verdict_s"],
        ),
        ("full answer (int8), first token p50", f"{answer['first_token_p50_s']:.2f} s", "", None),
        (
            "full answer (int8), p50",
            f"{answer['answer_p50_s']:.2f} s",
            f"≤ {GOALS['answer_s']} s",
            answer["answer_p50_s"] <= GOALS["answer_s"],
        ),
    ]
    for precision in PRECISIONS:
        row = llm[precision]
        goal = f"≥ {GOALS['int8_speedup']}× fp32" if precision == "int8" else ""
        rows.append(
            (
                f"{precision}: tokens/s (×fp32); agreement, cites, loops",
                f"{row['tokens_per_s']:.1f} (×{row['speedup_vs_fp32']:.2f}); "
                f"{row['token_agreement_with_fp32']:.2f}, {row['answers_citing_evidence']:.2f}, "
                f"{row['answers_looping']:.2f}",
                goal,
                row["speedup_vs_fp32"] >= GOALS["int8_speedup"] if precision == "int8" else None,
            )
        )
    show_table(f"assistant ({llm['prompt_tokens']}-token prompt, {llm['new_tokens']} new tokens)", rows)
    OUT.print(f"explanation (int8): {answer['explanation']}")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="fewer runs and prompts (a smoke test)")
    parser.add_argument(
        "--models-dir",
        type=Path,
        default=default_data_dir() / "models",
        help="where the converted LLM is cached",
    )
    args = parser.parse_args()
    runs, repeats, prompts, synthetic = (2, 1, 2, 200) if args.quick else (10, 3, 6, 2000)
    figures: dict[str, Any] = {"machine": machine_info(), "goals": GOALS}
    with tempfile.TemporaryDirectory() as tmp:
        data_dir = Path(tmp)
        status("loading the detector")
        detector = Detector.load(cache_path=data_dir / "templates.sqlite")
        store = build_store(detector, data_dir, synthetic)
        figures["verdict"] = verdict_section(detector, store, data_dir, runs)
        status(f"verdict figures: {figures['verdict']}")
        status("loading the default LLM (fp32)")
        fp32 = load_local_model(LocalModelConfig(cache_dir=args.models_dir, precision="fp32"))
        figures["llm"] = speed_and_quality(fp32, detector, new_tokens=64, repeats=repeats, n_prompts=prompts)
        status(f"llm figures: {json.dumps(figures['llm'], default=str)}")
        model = LocalChatModel(with_precision(fp32, "int8"), max_new_tokens=Settings().llm_max_new_tokens)
        figures["answer"] = answer_section(detector, store, model, data_dir, max(2, runs // 3))
        store.close()
    report(figures)
    print(json.dumps(figures, default=str))


if __name__ == "__main__":
    main()
