"""Learning commands: `logtriage generate` (synthetic data) and `logtriage train`."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.progress import Progress, TaskID

from detectors.embedding_cache import TemplateEmbeddingCache
from detectors.encoder import TransformerEncoder
from detectors.model import SequenceModelConfig
from detectors.model_io import EncoderRef
from detectors.synthetic import generate as generate_sequences
from detectors.train import TrainConfig, train
from integrations.cli import ConfigOption, fail, settings_from, stderr, stdout, user_errors
from integrations.cli_detector import (
    EncoderOption,
    FormatOption,
    LabelTokenOption,
    StepOption,
    WindowOption,
    _progress,
    _sequences,
)


def generate(
    n: Annotated[int, typer.Option("--n", min=1, help="number of sequences")] = 4000,
    seed: Annotated[int, typer.Option("--seed", help="same seed, same data")] = 0,
    anomaly_ratio: Annotated[float, typer.Option("--anomaly-ratio", min=0.0, max=1.0)] = 0.3,
    out: Annotated[str, typer.Option("--out", help="JSONL file to write, or - for stdout")] = "-",
) -> None:
    """Generate labelled synthetic service logs (JSONL: lines, label, category)."""
    target = sys.stdout if out == "-" else Path(out).open("w", encoding="utf-8")  # noqa: SIM115
    try:
        with _progress() as progress:
            task = progress.add_task("generating", total=n)
            with user_errors():
                for seq in generate_sequences(n, seed=seed, anomaly_ratio=anomaly_ratio):
                    record = {"lines": list(seq.lines), "label": seq.label, "category": seq.category}
                    target.write(json.dumps(record, ensure_ascii=False) + "\n")
                    progress.advance(task)
    finally:
        if target is not sys.stdout:
            target.close()
    if out != "-":
        stderr.print(f"wrote {n} sequences to {out}")


def train_command(
    train_file: Annotated[str, typer.Option("--train", help="labelled training data, any supported format")],
    out: Annotated[Path, typer.Option("--out", help="model directory to write")],
    valid_file: Annotated[
        str | None, typer.Option("--valid", help="validation data; default: a stratified split of --train")
    ] = None,
    encoder: EncoderOption = None,
    fmt: FormatOption = "auto",
    window: WindowOption = 20,
    step: StepOption = None,
    label_first_token: LabelTokenOption = False,
    dense_epochs: Annotated[int, typer.Option("--dense-epochs", min=0)] = 4,
    gated_epochs: Annotated[int, typer.Option("--gated-epochs", min=1)] = 6,
    batch_size: Annotated[int, typer.Option("--batch-size", min=1)] = 64,
    learning_rate: Annotated[float, typer.Option("--lr")] = 1e-3,
    d_model: Annotated[int, typer.Option("--d-model", help="sequence model width (multiple of 8)")] = 64,
    n_layers: Annotated[int, typer.Option("--layers", min=1)] = 2,
    seed: Annotated[int, typer.Option("--seed")] = 0,
    config: ConfigOption = None,
) -> None:
    """Train a detector (dense stage, then Top-P gated) and write a self-contained model directory."""
    settings = settings_from(config, encoder_path=encoder)
    with stderr.status("reading data"):
        train_seqs = list(_sequences(train_file, fmt, window, step, label_first_token))
        valid_seqs = (
            list(_sequences(valid_file, fmt, window, step, label_first_token)) if valid_file else None
        )
    if not train_seqs:
        fail(f"{train_file}: no sequences found")
    cfg = TrainConfig(
        model=SequenceModelConfig(d_model=d_model, n_layers=n_layers),
        dense_epochs=dense_epochs,
        gated_epochs=gated_epochs,
        batch_size=batch_size,
        learning_rate=learning_rate,
        seed=seed,
    )
    with user_errors():
        encoder_model = TransformerEncoder(settings.encoder_path)
        cache = TemplateEmbeddingCache(encoder_model, persist_path=settings.embedding_cache_path)
        ref = EncoderRef(
            path=str(settings.encoder_path) if settings.encoder_path else None,
            dim=encoder_model.dim,
            identity=encoder_model.identity,
        )
        with _progress() as progress:
            tasks: dict[str, TaskID] = {}

            def on_progress(stage: str, done: int, total: int) -> None:
                _update(progress, tasks, stage, done, total)

            report = train(
                train_seqs,
                valid_seqs,
                out,
                cache,
                ref,
                cfg,
                progress=on_progress,
                card_extra={
                    "train_file": Path(train_file).name,
                    "valid_file": valid_file and Path(valid_file).name,
                },
            )
    m = report.valid_metrics
    stdout.print(
        f"model {report.version} written to {out} in {report.seconds:.0f}s "
        f"({report.n_train} train / {report.n_valid} validation sequences; epochs {report.epochs_run})\n"
        f"validation: precision {m.precision:.4f} recall {m.recall:.4f} F1 {m.f1:.4f} AUPRC {m.auprc:.4f}\n"
        f"threshold {report.calibration.threshold:.4f}: {report.calibration.threshold_source}",
        highlight=False,
    )


def _update(progress: Progress, tasks: dict[str, TaskID], stage: str, done: int, total: int) -> None:
    if stage not in tasks:
        for previous in tasks.values():
            progress.update(previous, visible=False)
        tasks[stage] = progress.add_task(stage, total=total)
    progress.update(tasks[stage], completed=done)
