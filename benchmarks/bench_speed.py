"""Speed figures: cold encoder throughput, warm HDFS throughput against the seed, latency."""

from __future__ import annotations

import random
from collections.abc import Sequence
from typing import Any

import torch
from bench_common import call_seconds, elapsed, percentile_ms, rounded, status

from detectors import Detector
from detectors.embedding_cache import TemplateEmbeddingCache
from detectors.encoder import TransformerEncoder
from detectors.synthetic import generate
from detectors.templates import mask_line, mask_lines

_LETTERS = "abcdefghijklmnopqrstuvwxyz"
# A different word per measurement round, so no round reuses another's lines (or mask cache).
_ROUND_WORDS = ("warmup", "alpha", "bravo", "charlie", "delta", "echo", "foxtrot", "golf", "hotel")


def _word(index: int) -> str:
    """A digit-free word per index (masking keeps letters), so each line gets its own template."""
    letters = ""
    index += 26 * 26  # at least three letters
    while index:
        index, rest = divmod(index, 26)
        letters = _LETTERS[rest] + letters
    return letters


def unique_lines(n: int, round_word: str) -> list[str]:
    """n synthetic log lines whose masked templates are all distinct."""
    base: list[str] = []
    seed = 1000
    while len(base) < n:
        base.extend(line for seq in generate(200, seed=seed) for line in seq.lines)
        seed += 1
    lines = [f"{line} marker {_word(i)} {round_word}" for i, line in enumerate(base[:n])]
    templates = {mask_line(line) for line in lines}  # uncached masking: leaves mask_lines cold
    if len(templates) != n:
        raise AssertionError(f"expected {n} distinct templates, got {len(templates)}")
    return lines


def raw_forward_seconds(encoder: TransformerEncoder, lines: Sequence[str], batch_size: int) -> float:
    """A plain MiniLM forward pass: tokenizer + model, lines in original order, no pooling."""

    def run() -> None:
        with torch.inference_mode():
            for start in range(0, len(lines), batch_size):
                tokens = encoder.tokenizer(
                    list(lines[start : start + batch_size]),
                    padding=True,
                    truncation=True,
                    max_length=encoder.max_tokens,
                    return_tensors="pt",
                )
                encoder.model(**tokens)

    return elapsed(run)


def ours_seconds(encoder: TransformerEncoder, lines: Sequence[str]) -> float:
    """Our cold path: a fresh template cache embedding freshly masked lines."""
    return elapsed(lambda: TemplateEmbeddingCache(encoder).embed(mask_lines(list(lines))))


def encoder_throughput(encoder: TransformerEncoder, n: int, rounds: int = 2) -> dict[str, Any]:
    batch = encoder.batch_size
    warm = unique_lines(min(n, 128), _ROUND_WORDS[0])
    raw_forward_seconds(encoder, warm, batch)
    ours_seconds(encoder, warm)
    raw_times: list[float] = []
    ours_times: list[float] = []
    for r in range(rounds):  # alternate raw, ours, raw, ours; keep the best of each
        lines = unique_lines(n, _ROUND_WORDS[1 + r])
        raw_times.append(raw_forward_seconds(encoder, lines, batch))
        ours_times.append(ours_seconds(encoder, lines))
        status(f"encoder round {r + 1}: raw {n / raw_times[-1]:.0f} lines/s, ours {n / ours_times[-1]:.0f}")
    ours_rate, raw_rate = n / min(ours_times), n / min(raw_times)
    return {
        "encoder_lines_per_s": rounded(ours_rate, 1),
        "raw_minilm_lines_per_s": rounded(raw_rate, 1),
        "encoder_ratio": rounded(ours_rate / raw_rate, 3),
        "encoder_n_lines": n,
        "encoder_batch_size": batch,
        "encoder_rounds": rounds,
    }


def warm_throughput(detector: Detector, sequences: list[tuple[str, ...]], repeats: int) -> dict[str, Any]:
    """score_many over all sequences: with both caches warm, and with the window cache cleared."""
    batch = 256  # score_many's default, passed explicitly so the report names it

    def run() -> None:
        detector.score_many(sequences, batch_size=batch)

    run()  # warms the template cache and the window-output cache
    warm = min(elapsed(run) for _ in range(repeats))
    first: list[float] = []
    for _ in range(repeats):
        detector._window_cache.clear()
        first.append(elapsed(run))
    distinct_windows = len(detector._window_cache)
    n = len(sequences)
    return {
        "warm_seq_per_s": rounded(n / warm, 1),
        "first_pass_seq_per_s": rounded(n / min(first), 1),
        "throughput_sequences": n,
        "throughput_lines": sum(len(s) for s in sequences),
        "throughput_distinct_windows": distinct_windows,
        "score_batch_size": batch,
        "throughput_repeats": repeats,
    }


def seed_throughput(
    encoder: TransformerEncoder, sequences: list[tuple[str, ...]], n_sample: int
) -> dict[str, Any]:
    """The seed's way: every line of every sequence encoded, no cache, one sequence at a time.

    Only the encoding is timed (the seed's model forward is left out), so this is a lower
    bound on the seed's cost and the speedups derived from it are conservative.
    """
    sample = random.Random(0).sample(sequences, min(n_sample, len(sequences)))
    encoder.encode(list(sample[0]))  # warm-up
    total = sum(call_seconds(encoder.encode, list(seq)) for seq in sample)
    lines = sum(len(s) for s in sample)
    return {
        "seed_seq_per_s": rounded(len(sample) / total, 3),
        "seed_sample_sequences": len(sample),
        "seed_sample_mean_lines": rounded(lines / len(sample), 2),
        "seed_lines_per_s": rounded(lines / total, 1),
    }


def fifteen_line_sequence() -> tuple[str, ...]:
    for seq in generate(500, seed=99):
        if len(seq.lines) == 15:
            return seq.lines
    raise AssertionError("generate() gave no 15-line sequence")


def latency(detector: Detector, lines: tuple[str, ...], calls: int) -> dict[str, Any]:
    """score() of one sequence: repeated (window-cache hit) and unseen windows (cache cleared)."""
    for _ in range(20):
        detector.score(lines)  # warm-up: templates cached, allocator and threads warm
    repeated = [call_seconds(detector.score, lines) for _ in range(calls)]
    rng = random.Random(2024)
    unseen: list[float] = []
    for _ in range(calls):
        shuffled = list(lines)
        rng.shuffle(shuffled)
        detector._window_cache.clear()
        unseen.append(call_seconds(detector.score, shuffled))
    return {
        "latency_p50_ms": percentile_ms(repeated, 50),
        "latency_p95_ms": percentile_ms(repeated, 95),
        "latency_unseen_p50_ms": percentile_ms(unseen, 50),
        "latency_unseen_p95_ms": percentile_ms(unseen, 95),
        "latency_calls": calls,
        "latency_lines": len(lines),
    }
