"""Turn log sequences into model input: template ids into one shared embedding table.

Each distinct template is encoded once; a sequence becomes a list of row numbers into
that table, and a batch gathers its rows. This is what makes training on thousands of
sequences take minutes rather than hours on a CPU.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from detectors.embedding_cache import TemplateEmbeddingCache
from detectors.sequences import LabelledSequence
from detectors.templates import mask_lines


def window_spans(n_lines: int, max_lines: int) -> list[tuple[int, int]]:
    """Cut n_lines into windows of at most max_lines, overlapping by half a window.

    The overlap means an anomaly that straddles a window edge is still seen whole once.
    """
    if n_lines <= max_lines:
        return [(0, n_lines)]
    step = max(1, max_lines // 2)
    spans = [(start, start + max_lines) for start in range(0, n_lines - max_lines + 1, step)]
    if spans[-1][1] < n_lines:
        spans.append((n_lines - max_lines, n_lines))
    return spans


@dataclass
class EncodedCorpus:
    """Sequences as template ids, plus the table of template embeddings they index."""

    templates: list[str]
    table: torch.Tensor  # (T, encoder_dim)
    windows: list[list[int]]  # template ids of each window, each at most max_lines long
    window_owner: list[int]  # index of the source sequence of each window
    labels: list[int | None]  # per source sequence
    categories: list[str | None]  # per source sequence

    @property
    def n_sequences(self) -> int:
        return len(self.labels)


def encode_corpus(
    sequences: Iterable[LabelledSequence], cache: TemplateEmbeddingCache, max_lines: int
) -> EncodedCorpus:
    template_ids: dict[str, int] = {}
    windows: list[list[int]] = []
    owner: list[int] = []
    labels: list[int | None] = []
    categories: list[str | None] = []
    for index, seq in enumerate(sequences):
        ids = [template_ids.setdefault(t, len(template_ids)) for t in mask_lines(seq.lines)]
        for start, end in window_spans(len(ids), max_lines):
            windows.append(ids[start:end])
            owner.append(index)
        labels.append(seq.label)
        categories.append(seq.effective_category)
    templates = list(template_ids)
    table = torch.from_numpy(cache.embed(templates)) if templates else torch.zeros((0, cache.encoder.dim))
    return EncodedCorpus(templates, table, windows, owner, labels, categories)


def batch_from_ids(
    table: torch.Tensor, windows: Sequence[Sequence[int]]
) -> tuple[torch.Tensor, torch.Tensor]:
    """Gather a padded batch: embeddings (B, L, encoder_dim) and a mask (B, L), True on real lines."""
    length = max(len(w) for w in windows)
    ids = np.zeros((len(windows), length), dtype=np.int64)
    mask = np.zeros((len(windows), length), dtype=bool)
    for row, window in enumerate(windows):
        ids[row, : len(window)] = window
        mask[row, : len(window)] = True
    id_tensor = torch.from_numpy(ids)  # (B, L)
    return table[id_tensor], torch.from_numpy(mask)  # (B, L, E), (B, L)
