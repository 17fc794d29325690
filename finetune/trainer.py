"""The trainer of a fine-tuning run: completion-only labels, LoRA on the detected modules, and a
loss computed from the answer positions only.

Examples are rendered into (prompt, completion) text pairs with the assistant's own prompt code,
so the model is trained on the text it is sent at inference. Every prompt token is labelled -100.
Two engines: the transformers Trainer with our labels (the default, fastest on CPU) and TRL's
SFTTrainer with `completion_only_loss` (for GPU runs).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import torch
from transformers import PreTrainedModel, PreTrainedTokenizerBase, Trainer, TrainerCallback

from finetune.config import FinetuneConfig, FinetuneConfigError, detect_target_modules, top_layers
from finetune.examples import SFTExample, chat_tool_schemas, prompt_and_completion

logger = logging.getLogger(__name__)


class AnswerOnlyTrainer(Trainer):
    """The transformers Trainer, with the vocabulary projection and the loss computed from the
    first answer position on. In a 135M model the projection onto 49k tokens is ~20% of the
    forward pass, and prompts are ~85% of our tokens, so projecting the prompt is wasted work
    (measured with bf16 on 2 cores: 1.4x faster steps). The loss is the same number."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # Our loss divides by the batch's answer-token count itself, so the Trainer must hand it
        # over (num_items_in_batch) and must not divide by the accumulation steps again.
        self.model_accepts_loss_kwargs = True

    def compute_loss(
        self,
        model: torch.nn.Module,
        inputs: dict[str, torch.Tensor],
        return_outputs: bool = False,
        num_items_in_batch: torch.Tensor | int | None = None,
    ) -> Any:
        labels = inputs["labels"]  # (B, T); -100 on prompt and padding
        answer_positions = (labels != -100).nonzero()[:, 1]
        first_answer = int(answer_positions.min()) if len(answer_positions) else labels.size(1) - 1
        start = max(first_answer - 1, 0)  # the logits at position t predict token t + 1
        outputs = model(
            input_ids=inputs["input_ids"],
            attention_mask=inputs.get("attention_mask"),
            logits_to_keep=labels.size(1) - start,
        )
        logits = outputs.logits[:, :-1, :].float()  # (B, T - start - 1, V)
        targets = labels[:, start + 1 :]  # (B, T - start - 1)
        loss = torch.nn.functional.cross_entropy(
            logits.reshape(-1, logits.size(-1)), targets.reshape(-1), ignore_index=-100, reduction="sum"
        )
        # Summed over the answer tokens of every micro-batch of the step, then divided once, as
        # transformers does for causal LMs: long and short answers weigh per token.
        count = num_items_in_batch if num_items_in_batch is not None else (targets != -100).sum()
        loss = loss / torch.as_tensor(count, device=loss.device).clamp(min=1)
        return (loss, outputs) if return_outputs else loss


def cpu_bf16_supported() -> bool:
    """Whether this CPU computes bf16 natively (AVX512-BF16 or AMX); elsewhere it is emulated, slowly."""
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):  # pragma: no cover - depends on the torch build
        return False


def mixed_precision_bf16(config: FinetuneConfig) -> bool:
    """bf16 autocast for this run: as asked on a GPU; on a CPU only where it is native."""
    if not config.bf16 or torch.cuda.is_available():
        return config.bf16
    if cpu_bf16_supported():
        return True
    logger.warning("bf16 = true, but this CPU has no native bf16 (AVX512-BF16/AMX); training in fp32")
    return False


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
        "bf16": mixed_precision_bf16(config),
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
    from transformers import DataCollatorForSeq2Seq, TrainingArguments

    features = fitting(
        [completion_only_features(tokenizer, p["prompt"], p["completion"], config.max_length) for p in pairs],
        config.max_length,
    )
    return AnswerOnlyTrainer(
        model=get_peft_model(model, _lora_config(config, model)),
        args=TrainingArguments(**_common_args(config)),
        train_dataset=Dataset.from_list(features),
        # Pads input ids with the pad token and labels with -100, so padding is never learned.
        data_collator=DataCollatorForSeq2Seq(tokenizer, padding=True, label_pad_token_id=-100),
        callbacks=list(callbacks),
    )
