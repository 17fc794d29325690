"""LoRA / QLoRA supervised fine-tuning of the assistant LLM: load the base, train, save, merge.

The trainer itself (completion-only labels, LoRA on the detected modules, the answer-only loss) is
built in `finetune.trainer`; the settings live in `finetune.config`. Checkpoints are kept so an
interrupted run resumes where it stopped.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from transformers import PreTrainedModel, PreTrainedTokenizerBase, TrainerCallback

from finetune.config import FinetuneConfig, FinetuneConfigError
from finetune.examples import SFTExample
from finetune.trainer import build_trainer


class LossLog(TrainerCallback):
    """Keeps each logged training loss, for the run summary and the loss-falls check."""

    def __init__(self) -> None:
        self.losses: list[tuple[int, float]] = []

    def on_log(
        self, args: Any, state: Any, control: Any, logs: dict[str, float] | None = None, **kw: Any
    ) -> None:
        if logs and "loss" in logs:
            self.losses.append((int(state.global_step), float(logs["loss"])))


def load_base(config: FinetuneConfig, models_dir: Path) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from assistant.local_model import convert_default_model

    path = config.base_model or convert_default_model(models_dir)
    # On a CPU, bf16 is autocast over float32 weights (the Trainer's mixed precision), so the LoRA
    # weights and their optimizer state stay float32; on a GPU the frozen base is stored in bf16.
    on_gpu_bf16 = config.bf16 and torch.cuda.is_available()
    kwargs: dict[str, Any] = {"dtype": torch.bfloat16 if on_gpu_bf16 else torch.float32}
    if config.qlora:
        kwargs.update(_qlora_kwargs())
    tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
    model = AutoModelForCausalLM.from_pretrained(path, local_files_only=True, **kwargs)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return model, tokenizer


def _qlora_kwargs() -> dict[str, Any]:
    if not torch.cuda.is_available():
        raise FinetuneConfigError("QLoRA (qlora = true, --qlora) needs a CUDA GPU; use plain LoRA on CPU")
    try:
        from transformers import BitsAndBytesConfig
    except ImportError as err:  # pragma: no cover - depends on the install
        raise FinetuneConfigError("QLoRA needs bitsandbytes: pip install bitsandbytes") from err
    quant = BitsAndBytesConfig(
        load_in_4bit=True,
        bnb_4bit_quant_type="nf4",
        bnb_4bit_compute_dtype=torch.bfloat16,
        bnb_4bit_use_double_quant=True,
    )
    return {"quantization_config": quant, "device_map": {"": 0}}


def latest_checkpoint(output_dir: Path) -> Path | None:
    checkpoints = sorted(
        (output_dir / "checkpoints").glob("checkpoint-*"), key=lambda p: int(p.name.split("-")[-1])
    )
    return checkpoints[-1] if checkpoints else None


@dataclass(frozen=True)
class TrainReport:
    output_dir: Path
    examples: int
    steps: int
    losses: list[tuple[int, float]]
    seconds: float
    resumed_from: Path | None


def train(
    config: FinetuneConfig, examples: Sequence[SFTExample], models_dir: Path, resume: bool = True
) -> TrainReport:
    """Train, save the adapter (small: float16 LoRA weights) and a summary into `output_dir`."""
    torch.manual_seed(config.seed)
    torch.set_num_threads(config.threads or max(1, os.cpu_count() or 1))
    model, tokenizer = load_base(config, models_dir)
    losses = LossLog()
    trainer = build_trainer(config, model, tokenizer, examples, callbacks=[losses])
    checkpoint = latest_checkpoint(config.output_dir) if resume else None
    started = time.perf_counter()
    trainer.train(resume_from_checkpoint=str(checkpoint) if checkpoint else None)
    seconds = time.perf_counter() - started
    save_adapter(trainer.model, config.output_dir)
    report = TrainReport(
        config.output_dir,
        len(trainer.train_dataset),  # what was trained on: over-long examples are left out
        int(trainer.state.global_step),
        losses.losses,
        seconds,
        checkpoint,
    )
    summary = {
        "config": config.as_json(),
        "examples": report.examples,
        "steps": report.steps,
        "seconds": round(seconds, 1),
        "losses": losses.losses,
        "resumed_from": str(checkpoint) if checkpoint else None,
    }
    (config.output_dir / "training_summary.json").write_text(json.dumps(summary, indent=1) + "\n")
    return report


def save_adapter(model: Any, output_dir: Path) -> None:
    """The LoRA weights in float16 (half the size; merged into float weights at load anyway)."""
    from safetensors.torch import load_file, save_file

    output_dir.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(str(output_dir))
    config_path = output_dir / "adapter_config.json"
    if config_path.is_file():  # the base's folder name, not a path on the training machine
        adapter_config = json.loads(config_path.read_text())
        base = adapter_config.get("base_model_name_or_path") or ""
        adapter_config["base_model_name_or_path"] = Path(base).name or base
        config_path.write_text(json.dumps(adapter_config, indent=2, sort_keys=True) + "\n")
    weights = output_dir / "adapter_model.safetensors"
    if weights.is_file():
        tensors = {k: v.to(torch.float16).contiguous() for k, v in load_file(str(weights)).items()}
        save_file(tensors, str(weights), metadata={"format": "pt"})


def merge(base: Path | None, adapter_dir: Path, out_dir: Path, models_dir: Path) -> Path:
    """A plain model directory with the adapter folded in (for vLLM, Ollama import, or
    LOGTRIAGE_LLM_MODEL), written next to its tokenizer."""
    from peft import PeftModel

    model, tokenizer = load_base(FinetuneConfig(base_model=base), models_dir)
    merged = PeftModel.from_pretrained(model, str(adapter_dir)).merge_and_unload()
    out_dir.mkdir(parents=True, exist_ok=True)
    merged.save_pretrained(str(out_dir))
    tokenizer.save_pretrained(str(out_dir))
    return out_dir
