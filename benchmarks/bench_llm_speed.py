"""Tokens/s of the local LLM by precision, and whether the faster modes change its answers.

Speed: a ~200-token triage prompt, a fixed number of new tokens (EOS ignored, so every mode
generates the same count), best of `repeats`; prefill is included, as a user waits for it.

Quality, against fp32 on the eval prompts (real triage prompts of synthetic incidents):
- token agreement: fp32's greedy answer is fed to the model, and we count the positions where
  the mode's next-token choice equals fp32's (teacher forcing, so one early difference does not
  hide the rest);
- answers that cite an evidence line that exists ([L<n>] with n among the evidence);
- answers that loop (a repeated 8-gram).
"""

from __future__ import annotations

import copy
import re
import time
from dataclasses import dataclass
from typing import Any

import torch
from bench_common import status
from langchain_core.messages import HumanMessage, SystemMessage

from assistant.hermes import render_prompt
from assistant.local_model import LoadedModel, copy_at_precision, prepare_model
from assistant.prompts import SYSTEM_TRIAGE, triage_user_message
from detectors import Detector
from detectors.synthetic import generate
from tools import REGISTRY, Answer, Caller, ToolContext

PRECISIONS = ("fp32", "bf16", "int8", "int8-all")  # int8-all: every Linear, down_proj included


@dataclass(frozen=True)
class EvalPrompt:
    text: str
    evidence_numbers: frozenset[int]


def eval_prompts(detector: Detector, n: int = 6, seed: int = 11) -> list[EvalPrompt]:
    """Triage prompts of synthetic incidents, two thirds anomalous, as the assistant builds them."""
    ctx = ToolContext(detector=detector)
    sequences = list(generate(60, seed=seed))
    picked = [s for s in sequences if s.label == 1][: n - n // 3] + [s for s in sequences if s.label == 0][
        : n // 3
    ]
    prompts = []
    for seq in picked:
        answer: Answer = REGISTRY["score_logs"].call(
            ctx, {"lines": list(seq.lines), "use_memory": False}, Caller()
        )
        prompts.append(
            EvalPrompt(triage_user_message(answer), frozenset(e.index + 1 for e in answer.evidence[:5]))
        )
    return prompts


def with_precision(fp32: LoadedModel, precision: str) -> LoadedModel:
    if precision != "int8-all":
        return copy_at_precision(fp32, precision)  # type: ignore[arg-type]
    model = copy.deepcopy(fp32.model)
    with torch.no_grad():
        torch.ao.quantization.quantize_dynamic(model, {torch.nn.Linear}, dtype=torch.qint8, inplace=True)
    return prepare_model(model, fp32.tokenizer, name=fp32.name, precision="fp32")


def _ids(loaded: LoadedModel, user_text: str) -> torch.Tensor:
    prompt = render_prompt(loaded.tokenizer, [SystemMessage(SYSTEM_TRIAGE), HumanMessage(user_text)])
    return loaded.tokenizer(prompt, return_tensors="pt")["input_ids"]


def _greedy(loaded: LoadedModel, ids: torch.Tensor, new_tokens: int, force: bool) -> torch.Tensor:
    with torch.inference_mode():
        out = loaded.model.generate(
            input_ids=ids,
            attention_mask=torch.ones_like(ids),
            max_new_tokens=new_tokens,
            min_new_tokens=new_tokens if force else 0,
            do_sample=False,
            pad_token_id=loaded.pad_token_id,
            eos_token_id=list(loaded.stop_token_ids),
        )
    return out[0, ids.shape[1] :]


def tokens_per_second(loaded: LoadedModel, ids: torch.Tensor, new_tokens: int, repeats: int) -> float:
    best = 0.0
    for _ in range(repeats):
        start = time.perf_counter()
        _greedy(loaded, ids, new_tokens, force=True)
        best = max(best, new_tokens / (time.perf_counter() - start))
    return best


def _agreement(loaded: LoadedModel, ids: torch.Tensor, reference: torch.Tensor) -> tuple[int, int]:
    """(positions where the next-token choice matches fp32's, positions) under teacher forcing."""
    if reference.numel() == 0:
        return 0, 0
    full = torch.cat([ids[0], reference]).unsqueeze(0)
    with torch.inference_mode():
        logits = loaded.model(input_ids=full).logits[0, ids.shape[1] - 1 : -1]
    return int((logits.argmax(-1) == reference).sum()), int(reference.numel())


_CITE = re.compile(r"\[L(\d+)\]")


def _loops(text: str, n: int = 8) -> bool:
    words = text.split()
    grams = [tuple(words[i : i + n]) for i in range(len(words) - n + 1)]
    return len(grams) != len(set(grams))


def quality(
    loaded: LoadedModel, prompts: list[EvalPrompt], references: list[torch.Tensor], new_tokens: int
) -> dict[str, Any]:
    agree = total = cites = loops = 0
    samples = []
    for prompt, reference in zip(prompts, references, strict=True):
        ids = _ids(loaded, prompt.text)
        hit, n = _agreement(loaded, ids, reference)
        agree, total = agree + hit, total + n
        text = loaded.tokenizer.decode(
            _greedy(loaded, ids, new_tokens, force=False), skip_special_tokens=True
        )
        cites += any(int(m) in prompt.evidence_numbers for m in _CITE.findall(text))
        loops += _loops(text)
        samples.append(text.strip()[:160])
    return {
        "token_agreement_with_fp32": agree / total if total else None,
        "answers_citing_evidence": cites / len(prompts),
        "answers_looping": loops / len(prompts),
        "sample": samples[0],
    }


def speed_and_quality(
    fp32: LoadedModel, detector: Detector, *, new_tokens: int, repeats: int, n_prompts: int
) -> dict[str, Any]:
    prompts = eval_prompts(detector, n_prompts)
    speed_ids = _ids(fp32, prompts[0].text)
    status(f"speed prompt: {speed_ids.shape[1]} tokens; {len(prompts)} eval prompts")
    references = [_greedy(fp32, _ids(fp32, p.text), new_tokens, force=False) for p in prompts]
    figures: dict[str, Any] = {"prompt_tokens": int(speed_ids.shape[1]), "new_tokens": new_tokens}
    for precision in PRECISIONS:
        loaded = fp32 if precision == "fp32" else with_precision(fp32, precision)
        status(f"{precision}: tokens/s and answer quality")
        figures[precision] = {
            "tokens_per_s": tokens_per_second(loaded, speed_ids, new_tokens, repeats),
            **quality(loaded, prompts, references, new_tokens),
        }
    base = figures["fp32"]["tokens_per_s"]
    for precision in PRECISIONS:
        figures[precision]["speedup_vs_fp32"] = figures[precision]["tokens_per_s"] / base
    return figures
