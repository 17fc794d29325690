"""`Detector`: the read-only scoring facade. Load once, then `score()` as often as needed."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from detectors.calibration import Calibration
from detectors.corpus import batch_from_ids, window_spans
from detectors.embedding_cache import TemplateEmbeddingCache
from detectors.encoder import TextEncoder, TransformerEncoder
from detectors.model import SequenceModel
from detectors.model_io import DEFAULT_MODEL_DIR, SavedModel, load_model_dir
from detectors.results import DetectorResult, ExpertUsage, LineEvidence
from detectors.templates import mask_lines


class EncoderMismatchError(RuntimeError):
    """The encoder's width differs from the one the model was trained with."""


@dataclass(frozen=True, slots=True)
class _WindowOut:
    """The model's output for one window; a pure function of the window's templates."""

    logit: float
    category_probs: np.ndarray  # (C,)
    contributions: np.ndarray  # (len(window),)
    gate_means: np.ndarray  # (E,) mean combine weight over lines and layers
    gate_shares: np.ndarray  # (E,) share of routing decisions that kept the expert
    pooled: np.ndarray  # (D,)


class Detector:
    """Scores log sequences with a trained model directory and a line encoder.

    Thread-safe for concurrent `score` calls only in the sense that torch inference is; the
    embedding cache is shared, so create one Detector per process and reuse it.
    """

    def __init__(
        self,
        model: SequenceModel,
        saved: SavedModel,
        calibration: Calibration,
        cache: TemplateEmbeddingCache,
        card: dict[str, Any] | None = None,
        window_cache_entries: int = 50_000,
    ) -> None:
        if cache.encoder.dim != model.cfg.encoder_dim:
            raise EncoderMismatchError(
                f"model expects {model.cfg.encoder_dim}-wide line embeddings but the encoder gives "
                f"{cache.encoder.dim}; use the encoder named in the model's config.json ({saved.encoder.name})"
            )
        self.model = model.eval()
        self.saved = saved
        self.calibration = calibration
        self.cache = cache
        self.card = card or {}
        self.window_cache_entries = window_cache_entries
        self._window_cache: OrderedDict[tuple[str, ...], _WindowOut] = OrderedDict()

    @classmethod
    def load(
        cls,
        model_dir: str | Path | None = None,
        *,
        encoder: TextEncoder | None = None,
        encoder_path: str | Path | None = None,
        cache_entries: int = 100_000,
        cache_path: str | Path | None = None,
    ) -> Detector:
        """Load a model directory (default: the shipped model) and its encoder."""
        model, saved, calibration, card = load_model_dir(Path(model_dir) if model_dir else DEFAULT_MODEL_DIR)
        if encoder is None:
            path = encoder_path or saved.encoder.path
            encoder = TransformerEncoder(path)
        cache = TemplateEmbeddingCache(encoder, max_entries=cache_entries, persist_path=cache_path)
        return cls(model, saved, calibration, cache, card)

    @property
    def version(self) -> str:
        return self.saved.version

    @property
    def categories(self) -> list[str]:
        return list(self.model.cfg.categories)

    def score(self, lines: Sequence[str], *, top_k: int = 5) -> DetectorResult:
        """Score one sequence of log lines (any length; long input is windowed)."""
        return self.score_many([lines], top_k=top_k)[0]

    def score_many(
        self, sequences: Sequence[Sequence[str]], *, top_k: int = 5, batch_size: int = 256
    ) -> list[DetectorResult]:
        """Score many sequences at once; far faster per sequence than repeated `score` calls."""
        return [
            self._result(item, windows, top_k) for item, windows in self._windows_of(sequences, batch_size)
        ]

    def embed(self, sequences: Sequence[Sequence[str]]) -> np.ndarray:
        """Sequence embeddings (the pooled hidden state, averaged over windows): (N, d_model)."""
        out = np.zeros((len(sequences), self.model.cfg.d_model), dtype=np.float32)
        for i, (_, windows) in enumerate(self._windows_of(sequences, 256)):
            out[i] = np.mean([w.pooled for w in windows], axis=0)
        return out

    # -- internals -------------------------------------------------------------------------

    def _windows_of(
        self, sequences: Sequence[Sequence[str]], batch_size: int
    ) -> list[tuple[_Prepared, list[_WindowOut]]]:
        """Each sequence with the model outputs of its windows, all windows run together."""
        prepared = [_Prepared.of(lines, self.model.cfg.max_lines) for lines in sequences]
        outputs = self._run(prepared, batch_size)
        grouped: list[tuple[_Prepared, list[_WindowOut]]] = []
        offset = 0
        for item in prepared:
            grouped.append((item, outputs[offset : offset + len(item.spans)]))
            offset += len(item.spans)
        return grouped

    def _run(self, prepared: list[_Prepared], batch_size: int) -> list[_WindowOut]:
        """Outputs for every window of every prepared sequence, in order.

        A window's output depends only on its templates, so outputs are kept in a bounded
        LRU keyed by the template tuple: repetitive streams (most production logs) skip the
        model entirely for windows already seen, and duplicates within a call run once.
        """
        keys = [tuple(item.templates[start:end]) for item in prepared for start, end in item.spans]
        missing = list(dict.fromkeys(k for k in keys if k not in self._window_cache))
        if missing:
            for key, out in zip(missing, self._run_model(missing, batch_size), strict=True):
                self._window_cache[key] = out
                if len(self._window_cache) > self.window_cache_entries:
                    self._window_cache.popitem(last=False)
        results: list[_WindowOut] = []
        for key in keys:
            cached = self._window_cache.get(key)
            # A miss here means the window was evicted within this very call (more windows than the LRU holds).
            results.append(cached if cached is not None else self._run_model([key], 1)[0])
        return results

    def _run_model(self, windows: list[tuple[str, ...]], batch_size: int) -> list[_WindowOut]:
        rows: dict[str, int] = {}
        ids = [[rows.setdefault(t, len(rows)) for t in window] for window in windows]
        table = torch.from_numpy(self.cache.embed(list(rows)))  # (T, encoder_dim)
        outputs: list[_WindowOut | None] = [None] * len(windows)
        # Sorting by length keeps padding, and so wasted attention work, to a minimum.
        order = sorted(range(len(windows)), key=lambda i: len(ids[i]))
        with torch.inference_mode():
            for start in range(0, len(order), batch_size):
                idx = order[start : start + batch_size]
                x, mask = batch_from_ids(table, [ids[i] for i in idx])  # (B, L, E), (B, L)
                out = self.model(x, mask)
                real = mask.unsqueeze(-1).float()  # (B, L, 1)
                n_real = real.sum(dim=1) * len(out.routing)  # (B, 1)
                combine = torch.stack([r.combine_weights for r in out.routing]).sum(0)  # (B, L, E)
                chosen = torch.stack([(r.combine_weights > 0).float() for r in out.routing]).sum(0)
                logits = out.anomaly_logit.numpy()
                category_probs = torch.softmax(out.category_logits, dim=-1).numpy()
                gate_means = ((combine * real).sum(dim=1) / n_real).numpy()  # (B, E)
                gate_shares = ((chosen * real).sum(dim=1) / n_real).numpy()  # (B, E)
                pooled = out.pooled.numpy()
                per_line = out.line_contributions.numpy()  # (B, L)
                flagged = np.flatnonzero(self.calibration.probability(logits) >= self.calibration.threshold)
                occluded = self._occlusion({int(r): x[r, : len(ids[idx[r]])] for r in flagged}, logits)
                for row, i in enumerate(idx):
                    contributions = occluded.get(row)
                    if contributions is None:
                        contributions = per_line[row, : len(ids[i])].copy()
                    outputs[i] = _WindowOut(
                        float(logits[row]),
                        category_probs[row],
                        contributions,
                        gate_means[row],
                        gate_shares[row],
                        pooled[row],
                    )
        return [o for o in outputs if o is not None]

    def _occlusion(self, windows: dict[int, torch.Tensor], logits: np.ndarray) -> dict[int, np.ndarray]:
        """For each batch row given, how far its anomaly logit falls when each line is deleted.

        windows maps a batch row to its (L, E) line embeddings; the result maps it to (L,).

        Used for anomalous windows. The additive per-line terms are exact, but attention spreads
        an odd line's signal over its neighbours, so those terms rarely single it out. Deleting
        the line (later lines move up one position) asks the model directly; merely masking it
        would leave a positional gap the model may itself find odd. Windows of equal length share
        one forward pass, so there is no padding and few calls.
        """
        out: dict[int, np.ndarray] = {}
        by_length: dict[int, list[int]] = {}
        for row, window in windows.items():
            by_length.setdefault(window.shape[0], []).append(row)
        for length, group in by_length.items():
            if length == 1:  # leaving the only line out leaves nothing: it carries the whole logit
                out.update({k: np.array([logits[k]], dtype=np.float32) for k in group})
                continue
            keep = ~torch.eye(length, dtype=torch.bool)  # (L, L): variant v keeps every line but v
            stacked = torch.stack([windows[k] for k in group])  # (G, L, E)
            variants = stacked.unsqueeze(1).expand(-1, length, -1, -1)[:, keep]  # (G, L*(L-1), E)
            variants = variants.reshape(len(group) * length, length - 1, -1)  # (G*L, L-1, E)
            mask = torch.ones(variants.shape[:2], dtype=torch.bool)
            without = self.model(variants, mask).anomaly_logit.numpy().reshape(len(group), length)  # (G, L)
            for row, k in enumerate(group):
                out[k] = (logits[k] - without[row]).astype(np.float32)
        return out

    def _result(self, item: _Prepared, windows: list[_WindowOut], top_k: int) -> DetectorResult:
        worst = max(range(len(windows)), key=lambda w: windows[w].logit)  # as anomalous as its worst window
        probability = float(self.calibration.probability(np.array([windows[worst].logit]))[0])
        category_probs = windows[worst].category_probs
        is_anomalous = probability >= self.calibration.threshold
        category_index = _pick_category(category_probs, is_anomalous)
        line_scores = np.full(len(item.lines), -np.inf)
        for (start, end), window in zip(item.spans, windows, strict=True):
            line_scores[start:end] = np.maximum(line_scores[start:end], window.contributions)
        top = np.argsort(-line_scores, kind="stable")[:top_k]
        return DetectorResult(
            verdict="anomalous" if is_anomalous else "normal",
            probability=probability,
            threshold=self.calibration.threshold,
            threshold_source=self.calibration.threshold_source,
            category=self.model.cfg.categories[category_index],
            category_probability=float(category_probs[category_index]),
            evidence=[
                LineEvidence(
                    index=int(i),
                    line=item.lines[i],
                    template=item.templates[i],
                    contribution=float(line_scores[i]),
                )
                for i in top
            ],
            experts=[
                ExpertUsage(expert=e, mean_gate=float(m), share_selected=float(s))
                for e, (m, s) in enumerate(
                    zip(
                        np.mean([w.gate_means for w in windows], axis=0),
                        np.mean([w.gate_shares for w in windows], axis=0),
                        strict=True,
                    )
                )
            ],
            n_lines=len(item.lines),
            n_windows=len(item.spans),
            model_version=self.version,
        )


def _pick_category(category_probs: np.ndarray, is_anomalous: bool) -> int:
    """The most likely category that agrees with the verdict (index 0 is "normal").

    The heads are trained jointly but decide separately; reporting "normal" beside an
    anomalous verdict (or the reverse) would only confuse the reader.
    """
    if is_anomalous and len(category_probs) > 1:
        return 1 + int(np.argmax(category_probs[1:]))
    return 0 if not is_anomalous else int(np.argmax(category_probs))


@dataclass
class _Prepared:
    lines: list[str]
    templates: list[str]
    spans: list[tuple[int, int]]

    @classmethod
    def of(cls, lines: Sequence[str], max_lines: int) -> _Prepared:
        kept = [line for line in lines if line.strip()]
        if not kept:
            raise ValueError("no log lines to score: the input is empty or blank")
        return cls(kept, mask_lines(kept), window_spans(len(kept), max_lines))
