"""Shared pieces of the detector benchmark: consoles, timing, training with a progress bar."""

from __future__ import annotations

import os
import platform
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from detectors import Detector, LabelledSequence, TrainConfig, TrainReport, train
from detectors.embedding_cache import TemplateEmbeddingCache
from detectors.metrics import DetectionMetrics, detection_metrics
from detectors.model_io import EncoderRef, load_model_dir

REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DATA_DIR = REPO_ROOT.parent / "shared" / "data"

# Tables go to stdout (the JSON line comes last there); progress and status lines to stderr.
OUT = Console(width=120, highlight=False)
ERR = Console(stderr=True, highlight=False)


def status(message: str) -> None:
    ERR.print(f"[dim]·[/dim] {message}")


def elapsed(fn: Callable[[], Any]) -> float:
    """Wall time of one call, in seconds (time.perf_counter)."""
    started = time.perf_counter()
    fn()
    return time.perf_counter() - started


def call_seconds(fn: Callable[[Any], Any], arg: Any) -> float:
    started = time.perf_counter()
    fn(arg)
    return time.perf_counter() - started


def percentile_ms(seconds: Sequence[float], q: float) -> float:
    return round(float(np.percentile(np.asarray(seconds), q)) * 1000.0, 3)


def rounded(value: float, digits: int = 4) -> float:
    return round(float(value), digits)


def metrics_summary(m: DetectionMetrics) -> dict[str, Any]:
    """The flat figures of a DetectionMetrics, rounded for the report."""
    return {
        "precision": rounded(m.precision),
        "recall": rounded(m.recall),
        "f1": rounded(m.f1),
        "auprc": rounded(m.auprc),
        "n": m.n,
        "anomalies": m.anomalies,
        "tp": m.true_positives,
        "fp": m.false_positives,
        "fn": m.false_negatives,
    }


def score_sequences(
    detector: Detector, sequences: Sequence[LabelledSequence]
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(labels, probabilities, predictions) of the detector on labelled sequences."""
    results = detector.score_many([s.lines for s in sequences])
    labels = np.array([s.label for s in sequences], dtype=np.int64)
    probabilities = np.array([r.probability for r in results])
    predictions = np.array([int(r.verdict == "anomalous") for r in results])
    return labels, probabilities, predictions


def evaluate(detector: Detector, sequences: Sequence[LabelledSequence]) -> dict[str, Any]:
    labels, probabilities, predictions = score_sequences(detector, sequences)
    return metrics_summary(detection_metrics(labels, probabilities, predictions))


def load_detector(model_dir: Path, cache: TemplateEmbeddingCache) -> Detector:
    """A Detector on a shared template cache, so each template is encoded once per run."""
    model, saved, calibration, card = load_model_dir(model_dir)
    return Detector(model, saved, calibration, cache, card)


def train_with_progress(
    label: str,
    sequences: Sequence[LabelledSequence],
    out_dir: Path,
    cache: TemplateEmbeddingCache,
    config: TrainConfig,
) -> TrainReport:
    """`train` with a rich progress bar on stderr; the validation split comes from `sequences`."""
    encoder_ref = EncoderRef(dim=cache.encoder.dim, identity=cache.encoder.identity)
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with Progress(*columns, console=ERR, transient=True) as progress:
        task = progress.add_task(f"{label}: encoding templates", total=None)

        def on_progress(stage: str, step: int, total: int) -> None:
            progress.update(task, description=f"{label}: {stage}", completed=step, total=total)

        report = train(
            sequences, None, out_dir, cache, encoder_ref, config, on_progress, {"benchmark": label}
        )
    status(f"{label}: trained in {report.seconds:.1f} s, epochs {report.epochs_run}")
    return report


def machine_info() -> dict[str, Any]:
    return {
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "torch_version": torch.__version__,
        "python": platform.python_version(),
        "platform": platform.platform(),
    }


def goal_mark(ok: bool | None) -> str:
    if ok is None:
        return ""
    return "[green]met[/green]" if ok else "[red]MISSED[/red]"


def show_table(title: str, rows: Sequence[tuple[str, str, str, bool | None]]) -> None:
    """Print (figure, value, goal, met?) rows as one table on stdout."""
    table = Table(title=title, title_justify="left", min_width=100)
    table.add_column("figure")
    table.add_column("value", justify="right")
    table.add_column("goal")
    table.add_column("")
    for name, value, goal, ok in rows:
        table.add_row(name, value, goal, goal_mark(ok))
    OUT.print(table)
