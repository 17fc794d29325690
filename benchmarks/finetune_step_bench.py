"""Training-step speed of the shipped adapter's run on this machine: tokens per second of one
forward and backward pass, for each speed choice the default config makes.

Compares, on the same real training examples (tool calls, the longest kind) and the bundled
SmolLM2-135M-Instruct:
- the loss over every position's logits (transformers' own) against the answer-only loss;
- fp32 against bf16 autocast (where the CPU has native bf16);
- LoRA on the top half of the blocks against every block.

    python benchmarks/finetune_step_bench.py --data runs/finetune/data.jsonl [--steps 4]

Timings swing with machine load: compare rows within one run.
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import time
from pathlib import Path
from typing import Any

import torch

from finetune.config import FinetuneConfig
from finetune.examples import in_split, read_examples
from finetune.train import load_base
from finetune.trainer import build_trainer, cpu_bf16_supported
from integrations.settings import Settings


def _time_steps(trainer: Any, batches: list[dict[str, torch.Tensor]], answer_only: bool, bf16: bool) -> float:
    """Median seconds per token of forward + backward over `batches` (the first is a warm-up)."""
    model = trainer.model.train()
    per_token = []
    for i, batch in enumerate(batches):
        autocast = torch.autocast("cpu", dtype=torch.bfloat16) if bf16 else contextlib.nullcontext()
        started = time.perf_counter()
        with autocast:
            loss = trainer.compute_loss(model, batch) if answer_only else model(**batch).loss
        loss.backward()
        model.zero_grad(set_to_none=True)
        if i > 0:
            per_token.append((time.perf_counter() - started) / batch["input_ids"].numel())
    return statistics.median(per_token)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--data", type=Path, default=Path("runs/finetune/data.jsonl"))
    parser.add_argument("--steps", type=int, default=4, help="timed steps per variant (after one warm-up)")
    args = parser.parse_args()
    torch.manual_seed(0)
    examples = [e for e in in_split(read_examples(args.data), "train") if e.kind == "tool_call"]
    examples = examples[: args.steps + 1]
    models_dir = Settings().models_dir
    bf16_options = [False, True] if cpu_bf16_supported() else [False]
    rows = []
    for fraction in (0.5, 1.0):
        config = FinetuneConfig.from_mapping({"layers_fraction": fraction, "max_length": 4096})
        model, tokenizer = load_base(config, models_dir)
        trainer = build_trainer(config, model, tokenizer, examples)
        batches = [trainer.data_collator([trainer.train_dataset[i]]) for i in range(len(examples))]
        for bf16 in bf16_options:
            for answer_only in (False, True):
                seconds = _time_steps(trainer, batches, answer_only, bf16)
                rows.append((fraction, bf16, answer_only, 1.0 / seconds))
    tokens = statistics.mean(len(f["input_ids"]) for f in trainer.train_dataset)
    print(f"{len(examples)} tool-call examples, mean {tokens:.0f} tokens, {torch.get_num_threads()} threads")
    print(f"{'blocks adapted':<16}{'precision':<11}{'loss over':<14}{'tokens/s':>10}{'vs first':>10}")
    baseline = rows[0][3]
    for fraction, bf16, answer_only, speed in rows:
        print(
            f"{'top half' if fraction < 1 else 'all':<16}{'bf16' if bf16 else 'fp32':<11}"
            f"{'answers' if answer_only else 'all logits':<14}{speed:>10.1f}{speed / baseline:>9.2f}x"
        )


if __name__ == "__main__":
    main()
