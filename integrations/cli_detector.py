"""Detector commands: generate, train, score, eval."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from contextlib import ExitStack
from itertools import islice
from pathlib import Path
from typing import Annotated

import numpy as np
import typer
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    SpinnerColumn,
    TextColumn,
    TimeElapsedColumn,
)
from rich.table import Table

from detectors.detector import Detector
from detectors.metrics import DetectionMetrics, detection_metrics
from detectors.readers import InputFormat, read_sequences
from detectors.results import DetectorResult
from detectors.sequences import LabelledSequence
from integrations.cli import ConfigOption, fail, settings_from, stderr, stdout, user_errors
from integrations.settings import Settings
from integrations.wiring import load_detector
from knowledge.scoring import MemoryScore

FormatOption = Annotated[
    str, typer.Option("--format", help="auto, jsonl, seed-json, seed-jsonl, raw or hdfs", show_default=True)
]
WindowOption = Annotated[int, typer.Option("--window", min=1, help="raw logs: lines per sequence")]
StepOption = Annotated[
    int | None, typer.Option("--step", min=1, help="raw logs: lines between window starts")
]
LabelTokenOption = Annotated[
    bool, typer.Option("--label-first-token", help="raw logs: first token is a label, '-' normal (BGL)")
]
ModelOption = Annotated[
    Path | None, typer.Option("--model", help="model directory (env: LOGTRIAGE_MODEL_DIR); default: shipped")
]
EncoderOption = Annotated[
    Path | None, typer.Option("--encoder", help="encoder dir (env: LOGTRIAGE_ENCODER_PATH)")
]
JsonOption = Annotated[bool, typer.Option("--json", help="machine-readable output")]

CHUNK = 256  # sequences scored per batch: bounded memory on any input size


def _progress() -> Progress:
    return Progress(
        SpinnerColumn(),
        TextColumn("[progress.description]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=stderr,
        transient=True,
    )


def _sequences(
    source: str, fmt: str, window: int, step: int | None, label_first_token: bool
) -> Iterator[LabelledSequence]:
    if fmt not in ("auto", "jsonl", "seed-json", "seed-jsonl", "raw", "hdfs"):
        fail(f"unknown --format {fmt!r}; choose auto, jsonl, seed-json, seed-jsonl, raw or hdfs")
    if source == "-" and sys.stdin.isatty():
        fail("no input: give a FILE, or pipe logs in (`kubectl logs pod | logtriage score -`)")
    if source != "-" and not Path(source).exists():
        fail(f"{source}: no such file")
    fmt_literal: InputFormat = fmt  # type: ignore[assignment]  # checked above
    return read_sequences(
        source, fmt=fmt_literal, window=window, step=step, label_first_token=label_first_token
    )


def _load_detector(settings: Settings) -> Detector:
    with user_errors(), stderr.status("loading the detector and its encoder"):
        return load_detector(settings)


def _chunks(sequences: Iterator[LabelledSequence]) -> Iterator[list[LabelledSequence]]:
    while chunk := list(islice(sequences, CHUNK)):
        yield chunk


def _print_result(seq: LabelledSequence, result: DetectorResult) -> None:
    colour = "bold red" if result.verdict == "anomalous" else "bold green"
    stdout.print(
        f"[{colour}]{result.verdict.upper()}[/] p={result.probability:.3f} (threshold {result.threshold:.3f}) "
        f"category={result.category} ({result.category_probability:.2f})  {seq.source_id}  "
        f"[dim]{result.n_lines} lines, model {result.model_version}[/]",
        highlight=False,
    )
    if result.verdict == "anomalous":
        for ev in result.evidence[:3]:
            stdout.print(
                f"   {ev.contribution:+.2f}  [{ev.index + 1}] {ev.line[:160]}",
                highlight=False,
                markup=False,
            )
    experts = " ".join(f"e{e.expert}={e.mean_gate:.2f}" for e in result.experts)
    stdout.print(f"   [dim]experts: {experts}[/]", highlight=False)


def _score_stream(
    detector: Detector, sequences: Iterator[LabelledSequence], top_k: int
) -> Iterator[tuple[LabelledSequence, DetectorResult]]:
    with user_errors():
        for chunk in _chunks(sequences):
            yield from zip(chunk, detector.score_many([s.lines for s in chunk], top_k=top_k), strict=True)


def score(
    file: Annotated[str, typer.Argument(help="log file, or - for stdin")] = "-",
    model: ModelOption = None,
    encoder: EncoderOption = None,
    fmt: FormatOption = "auto",
    window: WindowOption = 20,
    step: StepOption = None,
    label_first_token: LabelTokenOption = False,
    top_k: Annotated[int, typer.Option("--top-k", min=1, help="evidence lines per sequence")] = 5,
    memory: Annotated[
        bool,
        typer.Option("--memory/--no-memory", help="show similar past incidents and blend their labels in"),
    ] = True,
    as_json: JsonOption = False,
    config: ConfigOption = None,
) -> None:
    """Score logs: is each sequence anomalous, how sure, what kind, which lines, and seen before?"""
    from integrations.cli_knowledge import opened_store, print_memory
    from knowledge.scoring import score_with_memory

    settings = settings_from(config, model_dir=model, encoder_path=encoder)
    sequences = _sequences(file, fmt, window, step, label_first_token)
    detector = _load_detector(settings)
    count = anomalous = 0
    with ExitStack() as stack:
        store = stack.enter_context(opened_store(settings, detector)) if memory else None
        for chunk in _chunks(sequences):
            lines = [s.lines for s in chunk]
            with user_errors():
                if store is None:
                    rows: list[tuple[DetectorResult, MemoryScore | None]] = [
                        (r, None) for r in detector.score_many(lines, top_k=top_k)
                    ]
                else:
                    scored = score_with_memory(
                        detector, store, lines, k=settings.similar_k, top_k_evidence=top_k
                    )
                    rows = [(m.detector, m) for m in scored]
            for seq, (result, with_memory) in zip(chunk, rows, strict=True):
                count += 1
                final = with_memory.blended.verdict if with_memory else result.verdict
                anomalous += final == "anomalous"
                if as_json:
                    row = {"source_id": seq.source_id, **result.model_dump()}
                    if with_memory:
                        row["similar"] = [h.model_dump(mode="json") for h in with_memory.similar]
                        row["blended"] = with_memory.blended.model_dump()
                    sys.stdout.write(json.dumps(row) + "\n")
                else:
                    _print_result(seq, result)
                    if with_memory:
                        print_memory(with_memory)
    if count == 0:
        fail(f"{file}: no log lines found (empty input?)")
    if not as_json:
        stdout.print(f"{count} sequences scored, {anomalous} anomalous", highlight=False)


def _metrics_table(metrics: DetectionMetrics) -> Table:
    table = Table(title="evaluation")
    for column in (
        "precision",
        "recall",
        "F1",
        "AUPRC",
        "accuracy",
        "n",
        "anomalies",
        "TP",
        "FP",
        "TN",
        "FN",
    ):
        table.add_column(column, justify="right")
    m = metrics
    table.add_row(
        f"{m.precision:.4f}",
        f"{m.recall:.4f}",
        f"{m.f1:.4f}",
        f"{m.auprc:.4f}",
        f"{m.accuracy:.4f}",
        str(m.n),
        str(m.anomalies),
        str(m.true_positives),
        str(m.false_positives),
        str(m.true_negatives),
        str(m.false_negatives),
    )
    return table


def evaluate(
    data: Annotated[str, typer.Option("--data", help="labelled sequences in any supported format")],
    model: ModelOption = None,
    encoder: EncoderOption = None,
    fmt: FormatOption = "auto",
    window: WindowOption = 20,
    step: StepOption = None,
    label_first_token: LabelTokenOption = False,
    as_json: JsonOption = False,
    config: ConfigOption = None,
) -> None:
    """Evaluate a model on labelled data: precision, recall, F1, AUPRC, accuracy, confusion counts."""
    settings = settings_from(config, model_dir=model, encoder_path=encoder)
    detector = _load_detector(settings)
    labels: list[int] = []
    probabilities: list[float] = []
    verdicts: list[int] = []
    categories: list[str | None] = []
    with _progress() as progress:
        task = progress.add_task("scoring", total=None)
        for seq, result in _score_stream(detector, _sequences(data, fmt, window, step, label_first_token), 1):
            if seq.label is None:
                fail(f"{seq.source_id}: sequence has no label; eval needs labelled data (label 0 or 1)")
            labels.append(seq.label)
            probabilities.append(result.probability)
            verdicts.append(int(result.verdict == "anomalous"))
            categories.append(seq.category)
            progress.advance(task)
    if not labels:
        fail(f"{data}: no sequences found")
    has_categories = any(c for c in categories)
    metrics = detection_metrics(
        np.array(labels), np.array(probabilities), np.array(verdicts), categories if has_categories else None
    )
    stdout.print(_metrics_table(metrics))
    for name, cat in metrics.per_category.items():
        stdout.print(f"  {name:<28} n={cat.n:<6} recall={cat.recall:.4f}", highlight=False)
    if as_json:
        keys = ("precision", "recall", "f1", "auprc", "accuracy", "n", "anomalies", "per_category")
        sys.stdout.write(json.dumps({k: v for k, v in metrics.model_dump().items() if k in keys}) + "\n")


def register(app: typer.Typer) -> None:
    from integrations.cli_train import generate, train_command

    app.command("generate")(generate)
    app.command("train")(train_command)
    app.command("score")(score)
    app.command("eval")(evaluate)
