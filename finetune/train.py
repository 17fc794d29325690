"""LoRA / QLoRA supervised fine-tuning of the assistant LLM with TRL's SFTTrainer.

Examples are rendered into (prompt, completion) text pairs with the assistant's own prompt code,
and TRL trains on the completion only: every prompt token is labelled -100. The LoRA target
modules are found from the model's architecture, so one code path serves Llama-style models (the
SmolLM2 default), Qwen2.5 and others built from linear projections. Checkpoints are kept so an
interrupted run resumes where it stopped.
"""

from __future__ import annotations

import json
import logging
import os
import time
import tomllib
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import torch
from transformers import PreTrainedModel, PreTrainedTokenizerBase, TrainerCallback

from finetune.examples import SFTExample, chat_tool_schemas, prompt_and_completion

logger = logging.getLogger(__name__)

# Linear layers never adapted: the output head (tied to the embeddings in small models) and
# routers of mixture-of-experts models.
_NEVER_TARGET = {"lm_head", "embed_out", "output", "score", "gate", "router"}


class FinetuneConfigError(ValueError):
    """A bad fine-tuning configuration; the message names the key and the flag."""


@dataclass
class FinetuneConfig:
    """Every knob of a run. A TOML file sets them by name; command-line flags override the file."""

    data: list[Path] = field(default_factory=list)  # JSONL example files (`logtriage finetune-data`)
    output_dir: Path = Path("runs/finetune/adapter")  # the adapter; checkpoints go under it
    base_model: Path | None = None  # None: the bundled SmolLM2-135M-Instruct
    lora_r: int = 8
    lora_alpha: int = 16
    lora_dropout: float = 0.05
    target_modules: list[str] | None = None  # None: every linear projection, found in the model
    # Adapt only the top share of the blocks. Backpropagation then stops there, which makes a CPU
    # step about 1.5x faster at 0.5; format and tool-call learning sit in the upper blocks.
    layers_fraction: float = 1.0
    learning_rate: float = 1e-3
    epochs: float = 1.0
    max_steps: int = -1  # > 0 overrides epochs
    batch_size: int = 1  # on CPU, one sequence per step is fastest (no padding)
    grad_accum: int = 2
    max_length: int = 1536  # tokens; longer examples are cut (their answer loses its end)
    warmup_ratio: float = 0.05
    max_examples: int | None = None  # train on the first N training examples only
    save_steps: int = 50
    logging_steps: int = 5
    seed: int = 0
    qlora: bool = False  # 4-bit base weights (bitsandbytes, CUDA only) for 7B models on one GPU
    bf16: bool = False  # bf16 compute (GPU)
    gradient_checkpointing: bool = False
    # "transformers": the Trainer with our completion-only labels (3x faster on CPU, measured);
    # "trl": TRL's SFTTrainer (its fused LM head saves GPU memory on large vocabularies).
    engine: str = "transformers"
    # CPU threads for torch; 0: one per core. On a busy machine fewer threads can be faster, as
    # torch's worker threads spin-wait on each other when the OS deschedules one of them.
    threads: int = 0

    @classmethod
    def from_toml(cls, path: Path, overrides: dict[str, Any] | None = None) -> FinetuneConfig:
        try:
            values = tomllib.loads(path.read_text(encoding="utf-8")) if path else {}
        except (OSError, tomllib.TOMLDecodeError) as err:
            raise FinetuneConfigError(f"cannot read the config file {path} (--config): {err}") from err
        return cls.from_mapping({**values, **(overrides or {})})

    @classmethod
    def from_mapping(cls, values: dict[str, Any]) -> FinetuneConfig:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise FinetuneConfigError(f"unknown fine-tuning setting(s) {unknown}; known: {sorted(known)}")
        values = dict(values)
        for key in ("output_dir", "base_model"):
            if values.get(key) is not None:
                values[key] = Path(values[key])
        if "data" in values:
            values["data"] = [Path(p) for p in values["data"]]
        config = cls(**values)
        if config.lora_r < 1 or config.learning_rate <= 0 or config.batch_size < 1:
            raise FinetuneConfigError("lora_r and batch_size must be ≥ 1 and learning_rate > 0")
        if config.engine not in ("transformers", "trl"):
            raise FinetuneConfigError(f"unknown engine {config.engine!r}; use 'transformers' or 'trl'")
        return config

    def as_json(self) -> dict[str, Any]:
        return json.loads(json.dumps(asdict(self), default=str))


def detect_target_modules(model: torch.nn.Module) -> list[str]:
    """The names of the linear projections inside the model's blocks (q_proj, ..., down_proj for
    Llama and Qwen2), found by walking the modules, so no per-architecture list is needed."""
    names: set[str] = set()
    for full_name, module in model.named_modules():
        leaf = full_name.rsplit(".", 1)[-1]
        is_linear = isinstance(module, torch.nn.Linear) or type(module).__name__.startswith("Linear")
        if is_linear and full_name and leaf not in _NEVER_TARGET and not leaf.isdigit():
            names.add(leaf)
    if not names:
        raise FinetuneConfigError(
            f"found no linear layers to adapt in {type(model).__name__}; set target_modules (--target-modules)"
        )
    return sorted(names)


def top_layers(model: PreTrainedModel, fraction: float) -> list[int] | None:
    """Indices of the top `fraction` of the transformer blocks (None: all of them)."""
    if fraction >= 1.0:
        return None
    n_layers = int(getattr(model.config.get_text_config(), "num_hidden_layers", 0) or 0)
    if n_layers < 1 or fraction <= 0:
        raise FinetuneConfigError("layers_fraction must be in (0, 1] for a model with num_hidden_layers")
    keep = max(1, round(n_layers * fraction))
    return list(range(n_layers - keep, n_layers))


def training_pairs(
    examples: Sequence[SFTExample], tokenizer: PreTrainedTokenizerBase
) -> list[dict[str, str]]:
    """(prompt, completion) text pairs, rendered as the assistant renders prompts at inference."""
    tools = chat_tool_schemas()
    pairs = []
    for example in examples:
        prompt, completion = prompt_and_completion(example, tokenizer, tools)
        pairs.append({"prompt": prompt, "completion": completion})
    return pairs


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
    kwargs: dict[str, Any] = {"dtype": torch.bfloat16 if config.bf16 else torch.float32}
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


def completion_only_features(
    tokenizer: PreTrainedTokenizerBase, prompt: str, completion: str, max_length: int
) -> dict[str, list[int]]:
    """Token ids of prompt + completion, with every prompt token labelled -100 (no loss) and every
    completion token labelled with itself. The prompt is tokenized alone, as at inference."""
    prompt_ids = tokenizer(prompt, add_special_tokens=False)["input_ids"]
    completion_ids = tokenizer(completion, add_special_tokens=False)["input_ids"]
    input_ids = (prompt_ids + completion_ids)[:max_length]
    labels = ([-100] * len(prompt_ids) + completion_ids)[:max_length]
    return {"input_ids": input_ids, "attention_mask": [1] * len(input_ids), "labels": labels}


def fitting(features: list[dict[str, list[int]]], max_length: int) -> list[dict[str, list[int]]]:
    """The examples whose whole answer fits in `max_length` tokens. A longer one would be cut in
    its answer (or lose it entirely, leaving nothing to learn), so it is left out, with a warning."""
    kept = [f for f in features if len(f["input_ids"]) < max_length]
    if len(kept) < len(features):
        logger.warning(
            "%d of %d examples are longer than max_length=%d tokens and were left out",
            len(features) - len(kept),
            len(features),
            max_length,
        )
    if not kept:
        raise FinetuneConfigError(
            f"every example is longer than max_length={max_length}; raise it (--max-length)"
        )
    return kept


def _lora_config(config: FinetuneConfig, model: PreTrainedModel) -> Any:
    from peft import LoraConfig

    return LoraConfig(
        r=config.lora_r,
        lora_alpha=config.lora_alpha,
        lora_dropout=config.lora_dropout,
        target_modules=config.target_modules or detect_target_modules(model),
        layers_to_transform=top_layers(model, config.layers_fraction),
        task_type="CAUSAL_LM",
    )


def _common_args(config: FinetuneConfig) -> dict[str, Any]:
    return {
        "output_dir": str(config.output_dir / "checkpoints"),
        "per_device_train_batch_size": config.batch_size,
        "gradient_accumulation_steps": config.grad_accum,
        "learning_rate": config.learning_rate,
        "num_train_epochs": config.epochs,
        "max_steps": config.max_steps,
        "lr_scheduler_type": "cosine",
        "warmup_ratio": config.warmup_ratio,
        "logging_steps": config.logging_steps,
        "save_steps": config.save_steps,
        "save_total_limit": 2,
        "seed": config.seed,
        "use_cpu": not torch.cuda.is_available(),
        "bf16": config.bf16,
        "gradient_checkpointing": config.gradient_checkpointing,
        "report_to": [],
        "dataloader_num_workers": 0,
    }


def build_trainer(
    config: FinetuneConfig,
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    examples: Sequence[SFTExample],
    callbacks: Sequence[TrainerCallback] = (),
) -> Any:
    """A trainer (transformers' or TRL's) with LoRA on the detected modules, loss on completions only."""
    from datasets import Dataset
    from peft import get_peft_model, prepare_model_for_kbit_training

    if not examples:
        raise FinetuneConfigError("no training examples; check data (--data) and max_examples")
    if config.qlora:
        model = prepare_model_for_kbit_training(
            model, use_gradient_checkpointing=config.gradient_checkpointing
        )
    pairs = training_pairs(examples, tokenizer)
    if config.engine == "trl":
        from trl import SFTConfig, SFTTrainer

        args = SFTConfig(
            **_common_args(config), max_length=config.max_length, completion_only_loss=True, packing=False
        )
        return SFTTrainer(
            model=model,
            args=args,
            train_dataset=Dataset.from_list(pairs),
            processing_class=tokenizer,
            peft_config=_lora_config(config, model),
            callbacks=list(callbacks),
        )
    from transformers import DataCollatorForSeq2Seq, Trainer, TrainingArguments

    features = [
        completion_only_features(tokenizer, p["prompt"], p["completion"], config.max_length) for p in pairs
    ]
    return Trainer(
        model=get_peft_model(model, _lora_config(config, model)),
        args=TrainingArguments(**_common_args(config)),
        train_dataset=Dataset.from_list(features),
        # Pads input ids with the pad token and labels with -100, so padding is never learned.
        data_collator=DataCollatorForSeq2Seq(tokenizer, padding=True, label_pad_token_id=-100),
        callbacks=list(callbacks),
    )


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
        config.output_dir, len(examples), int(trainer.state.global_step), losses.losses, seconds, checkpoint
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
