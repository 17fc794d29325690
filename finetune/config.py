"""Fine-tuning settings: every knob of a run, read from a TOML file plus flags, and the LoRA
targets found from the model's architecture."""

from __future__ import annotations

import json
import tomllib
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import torch
from transformers import PreTrainedModel

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
    max_length: int = 1536  # tokens; an example whose answer would be cut is left out
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
