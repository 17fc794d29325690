"""Fine-tuning commands: `finetune-data`, `finetune` (LoRA/QLoRA training) and `finetune-eval`."""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Annotated, Any, cast

import typer

from integrations.cli import ConfigOption, fail, settings_from, stderr, stdout, user_errors
from integrations.cli_detector import _load_detector, _progress

DEFAULT_DATA = Path("runs/finetune/data.jsonl")


def register(app: typer.Typer) -> None:
    app.command("finetune-data")(finetune_data)
    app.command("finetune")(finetune)
    app.command("finetune-eval")(finetune_eval)


def finetune_data(
    out: Annotated[Path, typer.Option("--out", help="JSONL file of examples to write")] = DEFAULT_DATA,
    triage: Annotated[int, typer.Option(help="triage-explanation examples (synthetic, real tools)")] = 300,
    chat: Annotated[int, typer.Option(help="chat examples: tool calls, tool answers, direct answers")] = 520,
    seed_format: Annotated[
        int, typer.Option("--seed-format", help="examples in the seed's prompt/input/output format")
    ] = 80,
    history: Annotated[int, typer.Option(help="labelled incidents in the throwaway store")] = 300,
    imports: Annotated[
        list[Path] | None,
        typer.Option(
            "--import",
            help="also read this file: prompt/input/output, instruction/input/output or messages JSONL",
        ),
    ] = None,
    no_synthetic: Annotated[bool, typer.Option("--no-synthetic", help="only the imported files")] = False,
    seed: Annotated[int, typer.Option(help="random seed; the same seed gives the same file")] = 0,
    config: ConfigOption = None,
) -> None:
    """Build the fine-tuning examples: tool traces from the real detector and a throwaway store,
    plus imported files (e.g. `logtriage feedback export --format sft`). Held-out split: by id."""
    from finetune.dataset import assemble
    from finetune.synthetic_data import DataPlan

    settings = settings_from(config)
    plan = (
        None
        if no_synthetic
        else DataPlan(history=history, triage=triage, chat=chat, seed_format=seed_format, seed=seed)
    )
    if plan is None and not imports:
        fail("nothing to build: give --import FILE, or drop --no-synthetic")
    detector = _load_detector(settings) if plan is not None else None
    with user_errors(), _progress() as progress:
        task = progress.add_task("building examples", total=(triage + chat) if plan else None)
        report = assemble(detector, plan, imports or [], out, on_example=lambda: progress.advance(task))
    stdout.print(
        f"wrote {report.total} examples to {report.path}: {report.by_kind}; split {report.by_split}",
        highlight=False,
    )


def _overrides(**flags: Any) -> dict[str, Any]:
    return {k: v for k, v in flags.items() if v is not None}


def finetune(
    data: Annotated[list[Path] | None, typer.Option("--data", help="example JSONL (finetune-data)")] = None,
    out: Annotated[Path | None, typer.Option("--out", help="adapter directory")] = None,
    train_config: Annotated[
        Path | None, typer.Option("--train-config", help="TOML file of training settings")
    ] = None,
    base_model: Annotated[
        Path | None, typer.Option("--base-model", help="HF model dir; default: bundled SmolLM2")
    ] = None,
    epochs: Annotated[float | None, typer.Option(help="passes over the training examples")] = None,
    max_steps: Annotated[int | None, typer.Option("--max-steps", help="stop after N optimizer steps")] = None,
    max_examples: Annotated[
        int | None, typer.Option("--max-examples", help="train on N examples (shuffled)")
    ] = None,
    learning_rate: Annotated[float | None, typer.Option("--lr")] = None,
    lora_r: Annotated[int | None, typer.Option("--lora-r")] = None,
    qlora: Annotated[bool, typer.Option("--qlora", help="4-bit base weights (CUDA + bitsandbytes)")] = False,
    bf16: Annotated[
        bool, typer.Option("--bf16", help="bf16 mixed precision (GPU, or a CPU with AVX512-BF16/AMX)")
    ] = False,
    fresh: Annotated[bool, typer.Option("--fresh", help="ignore checkpoints in --out; start over")] = False,
    merge_to: Annotated[
        Path | None, typer.Option("--merge", help="also write a merged model directory here")
    ] = None,
    config: ConfigOption = None,
) -> None:
    """LoRA fine-tuning of the assistant LLM on completions only; resumes from the last checkpoint."""
    from finetune.config import FinetuneConfig, FinetuneConfigError
    from finetune.examples import in_split, read_examples
    from finetune.train import merge, train

    settings = settings_from(config)
    overrides = _overrides(
        data=[str(p) for p in data] if data else None,
        output_dir=str(out) if out else None,
        base_model=str(base_model) if base_model else None,
        epochs=epochs,
        max_steps=max_steps,
        max_examples=max_examples,
        learning_rate=learning_rate,
        lora_r=lora_r,
        qlora=qlora or None,
        bf16=bf16 or None,
    )
    try:
        cfg = (
            FinetuneConfig.from_toml(train_config, overrides)
            if train_config
            else FinetuneConfig.from_mapping(overrides)
        )
    except FinetuneConfigError as err:
        fail(str(err))
    if not cfg.data:
        fail(f"no training data; run `logtriage finetune-data` and pass --data {DEFAULT_DATA}")
    with user_errors():
        examples = [e for path in cfg.data for e in in_split(read_examples(path), "train")]
    random.Random(cfg.seed).shuffle(examples)
    if cfg.max_examples is not None:
        examples = examples[: cfg.max_examples]
    stderr.print(f"training on {len(examples)} examples → {cfg.output_dir}", highlight=False)
    try:
        report = train(cfg, examples, settings.models_dir, resume=not fresh)
    except FinetuneConfigError as err:
        fail(str(err))
    first = report.losses[0][1] if report.losses else float("nan")
    last = report.losses[-1][1] if report.losses else float("nan")
    stdout.print(
        f"adapter saved to {report.output_dir}: {report.steps} steps, {report.seconds:.0f} s, "
        f"loss {first:.3f} → {last:.3f}"
        + (f" (resumed from {report.resumed_from.name})" if report.resumed_from else ""),
        highlight=False,
    )
    if merge_to is not None:
        merged = merge(cfg.base_model, cfg.output_dir, merge_to, settings.models_dir)
        stdout.print(f"merged model written to {merged}", highlight=False)


def finetune_eval(
    data: Annotated[list[Path], typer.Option("--data", help="example JSONL (finetune-data)")],
    adapter: Annotated[
        Path | None, typer.Option("--adapter", help="adapter to compare with the base")
    ] = None,
    base_model: Annotated[
        Path | None, typer.Option("--base-model", help="HF model dir; default: bundled SmolLM2")
    ] = None,
    limit: Annotated[
        int | None, typer.Option(help="evaluate N held-out examples, evenly spread over the file")
    ] = None,
    precision: Annotated[
        str, typer.Option(help="fp32, bf16 or int8: the assistant's LOGTRIAGE_LLM_PRECISION")
    ] = "int8",
    tool_precision: Annotated[
        str | None,
        typer.Option(
            "--tool-precision",
            help="precision for the tool-call examples, as LOGTRIAGE_LLM_TOOL_PRECISION; "
            "default: the assistant's (fp32 for the bundled model)",
        ),
    ] = None,
    out: Annotated[Path | None, typer.Option("--out", help="write the full report as JSON here")] = None,
    skip_base: Annotated[bool, typer.Option("--skip-base", help="evaluate the adapter only")] = False,
    rows_dir: Annotated[
        Path | None,
        typer.Option("--rows-dir", help="save each scored answer here as it is made; a rerun resumes"),
    ] = None,
    config: ConfigOption = None,
) -> None:
    """Held-out comparison of the base model and the adapter: valid JSON, category accuracy,
    tool-call exact match, answers citing a real evidence line."""
    from assistant.local_model import PRECISIONS, Precision
    from finetune.evaluate import evaluate_models, format_table
    from integrations.wiring import default_tool_precision

    settings = settings_from(config)
    for given in (precision, tool_precision):
        if given is not None and given not in PRECISIONS:
            fail(f"unknown precision {given!r}; use one of {', '.join(PRECISIONS)}")
    with user_errors():
        report = evaluate_models(
            data,
            settings.models_dir,
            base_model,
            adapter,
            precision,
            limit,
            skip_base,
            progress=_progress,
            rows_dir=rows_dir,
            tool_precision=default_tool_precision(
                cast("Precision | None", tool_precision), base_model, cast("Precision", precision)
            ),
        )
    stdout.print(format_table(report), highlight=False)
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(report, indent=1) + "\n")
        stderr.print(f"report written to {out}", highlight=False)
