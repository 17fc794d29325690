"""The learning loop: a category the detector never saw, five corrections, and no retraining.

1. Train a detector on synthetic data with one anomaly category held out.
2. Import that training data into a fresh incident store (labelled history).
3. Recall on fresh sequences of the held-out category: detector alone, and with memory.
4. Five corrections through the feedback writer, as an engineer would send them from Slack.
5. Recall on further fresh sequences, and the false-positive rate on normal sequences before/after.

Shared by `knowledge_bench.py` (figures) and `tests/knowledge/test_learning_loop.py` (goals).
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from pathlib import Path

from detectors import Detector, TrainConfig, train
from detectors.embedding_cache import TemplateEmbeddingCache
from detectors.model import SequenceModelConfig
from detectors.model_io import EncoderRef, load_model_dir
from detectors.sequences import LabelledSequence
from detectors.synthetic import generate
from knowledge.blend import BlendPolicy
from knowledge.embedding import PooledEmbedder, SequenceEmbedder, TemplateMeanEmbedder
from knowledge.open import EmbeddedEngine, StoreLocation, open_store
from knowledge.scoring import score_with_memory
from knowledge.store import IncidentStore

CORRECTION_POOL = 50  # fresh held-out sequences the engineer's corrections are drawn from


@dataclass(frozen=True)
class LoopFigures:
    held_out: str
    vector: str
    corrections: int
    detector_recall_before: float
    memory_recall_before: float
    memory_recall_after: float
    detector_recall_after: float
    fpr_before: float
    fpr_after: float
    n_eval: int
    n_normal: int
    train_seconds: float

    def as_dict(self) -> dict[str, object]:
        return asdict(self)


def of_category(category: str, n: int, seed: int) -> list[LabelledSequence]:
    """`n` fresh sequences of one category (the generator interleaves categories)."""
    found: list[LabelledSequence] = []
    batch = max(8 * n, 200)
    while len(found) < n:
        found = [s for s in generate(batch, seed=seed) if s.category == category][:n]
        batch *= 2
    return found


def small_train_config(seed: int = 0) -> TrainConfig:
    return TrainConfig(model=SequenceModelConfig(), dense_epochs=3, gated_epochs=4, seed=seed)


def train_without(
    held_out: str, out_dir: Path, cache: TemplateEmbeddingCache, n_train: int, config: TrainConfig
) -> tuple[Detector, list[LabelledSequence], float]:
    sequences = [s for s in generate(n_train, seed=100) if s.category != held_out]
    started = time.perf_counter()
    encoder = cache.encoder
    ref = EncoderRef(dim=encoder.dim, identity=encoder.identity)
    if not (out_dir / "config.json").exists():  # an earlier run's model is reused
        train(sequences, None, out_dir, cache, ref, config)
    model, saved, calibration, card = load_model_dir(out_dir)
    return Detector(model, saved, calibration, cache, card), sequences, time.perf_counter() - started


def _rates(
    store: IncidentStore, detector: Detector, seqs: list[LabelledSequence], policy: BlendPolicy
) -> tuple[float, float]:
    """(share the detector alone calls anomalous, share the blend calls anomalous)."""
    scored = score_with_memory(detector, store, [s.lines for s in seqs], k=5, policy=policy)
    alone = sum(m.detector.verdict == "anomalous" for m in scored) / len(seqs)
    blended = sum(m.blended.verdict == "anomalous" for m in scored) / len(seqs)
    return alone, blended


def embedder_for(vector: str, detector: Detector) -> SequenceEmbedder:
    return TemplateMeanEmbedder(detector.cache) if vector == "template-mean" else PooledEmbedder(detector)


def run_learning_loop(
    held_out: str,
    workdir: Path,
    cache: TemplateEmbeddingCache,
    *,
    n_train: int = 1500,
    n_eval: int = 100,
    n_normal: int = 300,
    corrections: int = 5,
    vector: str = "template-mean",
    engine: EmbeddedEngine = "edge",
    config: TrainConfig | None = None,
    policy: BlendPolicy | None = None,
    trained: tuple[Detector, list[LabelledSequence], float] | None = None,
) -> LoopFigures:
    """Run the loop; pass `trained` (from `train_without`) to reuse one detector across runs."""
    policy = policy or BlendPolicy()
    detector, history, train_seconds = trained or train_without(
        held_out, workdir / "model", cache, n_train, config or small_train_config()
    )
    # Corrections are what an engineer sends when a verdict was wrong: they come from sequences the
    # detector missed, drawn from a pool apart from the before and after sets.
    fresh = of_category(held_out, 2 * n_eval + CORRECTION_POOL, seed=200)
    before, pool, after = (
        fresh[:n_eval],
        fresh[n_eval : n_eval + CORRECTION_POOL],
        fresh[n_eval + CORRECTION_POOL :],
    )
    normals = of_category("normal", n_normal, seed=300)
    store = open_store(
        StoreLocation(data_dir=workdir / "data", engine=engine), embedder_for(vector, detector)
    )
    try:
        store.index(history)
        detector_before, memory_before = _rates(store, detector, before, policy)
        _, fpr_before = _rates(store, detector, normals, policy)
        missed = [(s, r) for s, r in zip(pool, detector.score_many([s.lines for s in pool]), strict=True)]
        missed = [(s, r) for s, r in missed if r.verdict == "normal"][:corrections]
        for seq, shown in missed:
            store.record_feedback(
                user="oncall",
                correct=False,
                source="slack",
                lines=list(seq.lines),
                verdict=shown.verdict,
                probability=shown.probability,
                category=held_out,
                source_id=seq.source_id,
            )
        detector_after, memory_after = _rates(store, detector, after, policy)
        _, fpr_after = _rates(store, detector, normals, policy)
    finally:
        store.close()
    return LoopFigures(
        held_out=held_out,
        vector=vector,
        corrections=len(missed),
        detector_recall_before=detector_before,
        memory_recall_before=memory_before,
        memory_recall_after=memory_after,
        detector_recall_after=detector_after,
        fpr_before=fpr_before,
        fpr_after=fpr_after,
        n_eval=n_eval,
        n_normal=n_normal,
        train_seconds=train_seconds,
    )
