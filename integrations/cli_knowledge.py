"""Incident memory commands: index, similar, feedback record/retract/export; memory output for score."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated

import typer

from detectors.detector import Detector
from integrations.cli import ConfigOption, fail, settings_from, stderr, stdout, user_errors
from integrations.cli_detector import (
    EncoderOption,
    FormatOption,
    JsonOption,
    LabelTokenOption,
    ModelOption,
    StepOption,
    WindowOption,
    _load_detector,
    _progress,
    _sequences,
)
from integrations.settings import Settings
from integrations.wiring import open_incident_store, store_location
from knowledge.export import ExportFormat, export_lines
from knowledge.records import SOURCES, IncidentFilter, SimilarIncident, Source
from knowledge.scoring import MemoryScore
from knowledge.store import IncidentStore

feedback_app = typer.Typer(help="Record, take back and export engineers' feedback.", no_args_is_help=True)


@contextmanager
def opened_store(settings: Settings, detector: Detector) -> Iterator[IncidentStore]:
    with user_errors(), stderr.status(f"opening the {store_location(settings).describe()}"):
        store = open_incident_store(settings, detector)
    try:
        with user_errors():
            yield store
    finally:
        store.close()


def _source(value: str) -> Source:
    if value not in SOURCES:
        fail(f"unknown --source {value!r}; choose one of {', '.join(SOURCES)}")
    return value  # type: ignore[return-value]  # checked above


def print_similar(similar: list[SimilarIncident], indent: str = "   ") -> None:
    if not similar:
        stdout.print(f"{indent}[dim]no similar past incidents[/]", highlight=False)
        return
    for hit in similar:
        label = {1: "anomalous", 0: "normal", None: "unconfirmed"}[hit.label]
        extra = f" (+{hit.duplicates} identical)" if hit.duplicates else ""
        stdout.print(
            f"{indent}{hit.similarity:.3f}  {label:<11} {hit.category or '-':<24} "
            f"{hit.created_at:%Y-%m-%d}  {hit.id}{extra}",
            highlight=False,
        )
        if hit.resolution:
            stdout.print(f"{indent}       resolution: {hit.resolution}", highlight=False, markup=False)


def print_memory(scored: MemoryScore) -> None:
    b = scored.blended
    vote = "no vote" if b.retrieval.probability is None else f"vote {b.retrieval.probability:.2f}"
    colour = "bold red" if b.verdict == "anomalous" else "bold green"
    stdout.print(
        f"   with memory: [{colour}]{b.verdict.upper()}[/] p={b.probability:.3f} "
        f"(detector {b.detector_probability:.3f}, {vote} from {b.retrieval.voters} incidents, "
        f"weight {b.retrieval.weight:.2f}; decided by {b.decided_by})",
        highlight=False,
    )
    print_similar(scored.similar)


def index(
    file: Annotated[str, typer.Argument(help="labelled sequences in any format score reads, or -")],
    fmt: FormatOption = "auto",
    window: WindowOption = 20,
    step: StepOption = None,
    label_first_token: LabelTokenOption = False,
    source: Annotated[str, typer.Option("--source", help="recorded as the incidents' source")] = "import",
    batch_size: Annotated[int, typer.Option("--batch-size", min=1, max=10_000)] = 256,
    model: ModelOption = None,
    encoder: EncoderOption = None,
    config: ConfigOption = None,
) -> None:
    """Import sequences as incidents; their labels become confirmed labels. Importing twice adds nothing."""
    settings = settings_from(config, model_dir=model, encoder_path=encoder)
    incident_source = _source(source)
    sequences = _sequences(file, fmt, window, step, label_first_token)
    detector = _load_detector(settings)
    with opened_store(settings, detector) as store, _progress() as progress:
        task = progress.add_task("indexing", total=None)
        report = store.index(
            sequences,
            source=incident_source,
            batch_size=batch_size,
            on_batch=lambda n: progress.advance(task, n),
        )
        total = store.count()
    if report.read == 0:
        fail(f"{file}: no sequences found (empty input?)")
    stdout.print(
        f"indexed {report.stored} sequences ({report.new} new) in {report.seconds:.1f}s "
        f"({report.per_second:.0f}/s); {total} incidents in the store",
        highlight=False,
    )


def similar(
    file: Annotated[str, typer.Argument(help="log file, or - for stdin")] = "-",
    k: Annotated[int | None, typer.Option("-k", min=1, max=100, help="incidents to show")] = None,
    category: Annotated[str | None, typer.Option("--category", help="only this category")] = None,
    confirmed_only: Annotated[bool, typer.Option("--confirmed-only", help="only confirmed labels")] = False,
    fmt: FormatOption = "auto",
    window: WindowOption = 20,
    step: StepOption = None,
    as_json: JsonOption = False,
    model: ModelOption = None,
    config: ConfigOption = None,
) -> None:
    """Find the past incidents most similar to each sequence of the input."""
    settings = settings_from(config, model_dir=model)
    filters = IncidentFilter(category=category, confirmed_only=confirmed_only)
    sequences = list(_sequences(file, fmt, window, step, False))
    if not sequences:
        fail(f"{file}: no log lines found (empty input?)")
    detector = _load_detector(settings)
    with opened_store(settings, detector) as store:
        results = store.similar_many([s.lines for s in sequences], k or settings.similar_k, filters)
    for seq, hits in zip(sequences, results, strict=True):
        if as_json:
            row = {"source_id": seq.source_id, "similar": [h.model_dump(mode="json") for h in hits]}
            sys.stdout.write(json.dumps(row, ensure_ascii=False) + "\n")
        else:
            stdout.print(f"{seq.source_id}", highlight=False)
            print_similar(hits)


@feedback_app.command("record")
def feedback_record(
    user: Annotated[str, typer.Option("--user", help="who is giving the feedback")],
    correct: Annotated[bool, typer.Option("--correct/--wrong", help="was the verdict right?")],
    incident: Annotated[str | None, typer.Option("--incident", help="incident id")] = None,
    file: Annotated[str | None, typer.Option("--file", help="log lines instead of an incident id")] = None,
    category: Annotated[str | None, typer.Option("--category", help="the right category")] = None,
    note: Annotated[str, typer.Option("--note", help="why; exported for fine-tuning")] = "",
    model: ModelOption = None,
    config: ConfigOption = None,
) -> None:
    """Say whether a verdict was right. Later verdicts on similar logs change at once."""
    settings = settings_from(config, model_dir=model)
    if (incident is None) == (file is None):
        fail("give exactly one of --incident ID and --file LOGS")
    detector = _load_detector(settings)
    lines: list[str] | None = None
    verdict = probability = None
    if file is not None:
        sequences = list(_sequences(file, "raw", 10**9, None, False))
        if not sequences:
            fail(f"{file}: no log lines found (empty input?)")
        lines = list(sequences[0].lines)
        with user_errors():
            result = detector.score(lines)
        verdict, probability = result.verdict, result.probability
    with opened_store(settings, detector) as store:
        receipt = store.record_feedback(
            user=user,
            correct=correct,
            source="cli",
            incident_id=incident,
            lines=lines,
            verdict=verdict,
            probability=probability,
            category=category,
            note=note,
        )
    state = "recorded" if receipt.changed else "already recorded (nothing changed)"
    label = {1: "anomalous", 0: "normal", None: "unknown"}[receipt.label]
    stdout.print(
        f"feedback {state}: incident {receipt.incident_id} is now {label}"
        f" ({receipt.category}), {receipt.votes} vote(s)",
        highlight=False,
    )


@feedback_app.command("retract")
def feedback_retract(
    incident: Annotated[str, typer.Option("--incident", help="incident id")],
    user: Annotated[str, typer.Option("--user", help="whose feedback to take back")],
    model: ModelOption = None,
    config: ConfigOption = None,
) -> None:
    """Take back a user's feedback on an incident."""
    settings = settings_from(config, model_dir=model)
    detector = _load_detector(settings)
    with opened_store(settings, detector) as store:
        receipt = store.retract_feedback(incident, user, "cli")
    state = "retracted" if receipt.changed else f"{user} had no feedback on it"
    stdout.print(f"incident {receipt.incident_id}: {state}; label now {receipt.label}", highlight=False)


@feedback_app.command("export")
def feedback_export(
    fmt: Annotated[str, typer.Option("--format", help="detector (JSONL for train) or sft (chat JSONL)")],
    out: Annotated[str, typer.Option("--out", help="file to write, or - for stdout")] = "-",
    include_imports: Annotated[
        bool, typer.Option("--include-imports", help="also incidents labelled by import")
    ] = False,
    model: ModelOption = None,
    config: ConfigOption = None,
) -> None:
    """Write confirmed incidents as training data for the detector or for LLM fine-tuning."""
    if fmt not in ("detector", "sft"):
        fail(f"unknown --format {fmt!r}; choose detector or sft")
    export_format: ExportFormat = fmt  # type: ignore[assignment]  # checked above
    settings = settings_from(config, model_dir=model)
    detector = _load_detector(settings)
    written = 0
    with opened_store(settings, detector) as store:
        target = sys.stdout if out == "-" else Path(out).open("w", encoding="utf-8")  # noqa: SIM115
        try:
            for line in export_lines(store.incidents(), export_format, include_imports):
                target.write(line + "\n")
                written += 1
        finally:
            if target is not sys.stdout:
                target.close()
    stderr.print(f"exported {written} incidents ({fmt})", highlight=False)


def register(app: typer.Typer) -> None:
    app.command("index")(index)
    app.command("similar")(similar)
    app.add_typer(feedback_app, name="feedback")
