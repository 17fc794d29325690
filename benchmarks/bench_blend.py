"""Does retrieval-augmented scoring keep F1 on real data? Detector alone against the blend.

For HDFS and BGL_2k: train a detector on the training part, import that same training part into a
fresh embedded incident store (its labels become confirmed labels, as a team's labelled history
would), then score the held-out part with the detector alone and with the blend.
Shared by `knowledge_bench.py` and `tests/knowledge/test_blend_on_shared_data.py`.
"""

from __future__ import annotations

import random
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from bench_common import load_detector, metrics_summary, rounded, train_with_progress

from detectors import Detector, LabelledSequence, TrainConfig
from detectors.embedding_cache import TemplateEmbeddingCache
from detectors.metrics import detection_metrics
from detectors.readers import read_sequences
from knowledge.blend import BlendPolicy
from knowledge.embedding import TemplateMeanEmbedder
from knowledge.open import StoreLocation, open_store
from knowledge.scoring import score_with_memory

BGL_WINDOW = 20


def blend_figures(
    detector: Detector,
    history: Sequence[LabelledSequence],
    test: Sequence[LabelledSequence],
    workdir: Path,
    policy: BlendPolicy | None = None,
) -> dict[str, Any]:
    """F1 of the detector alone and of the blend on `test`, with `history` as the memory."""
    store = open_store(StoreLocation(data_dir=workdir), TemplateMeanEmbedder(detector.cache))
    try:
        store.index(history)
        scored = score_with_memory(detector, store, [s.lines for s in test], policy=policy)
    finally:
        store.close()
    labels = np.array([s.label for s in test], dtype=np.int64)
    alone_p = np.array([m.detector.probability for m in scored])
    alone = np.array([int(m.detector.verdict == "anomalous") for m in scored])
    blend_p = np.array([m.blended.probability for m in scored])
    blended = np.array([int(m.blended.verdict == "anomalous") for m in scored])
    decided = [m.blended.decided_by for m in scored]
    detector_alone = metrics_summary(detection_metrics(labels, alone_p, alone))
    with_memory = metrics_summary(detection_metrics(labels, blend_p, blended))
    return {
        "n_history": len(history),
        "n_test": len(test),
        "detector_alone": detector_alone,
        "with_memory": with_memory,
        "f1_change": rounded(with_memory["f1"] - detector_alone["f1"]),
        "decided_by": {name: decided.count(name) for name in ("detector", "blend", "memory")},
        "verdicts_changed": int((alone != blended).sum()),
    }


def hdfs_blend(
    data_dir: Path,
    cache: TemplateEmbeddingCache,
    n_train: int,
    config: TrainConfig,
    n_test: int | None = None,
) -> dict[str, Any]:
    train_all = list(read_sequences(data_dir / "hdfs" / "robust_log_train.csv", fmt="hdfs"))
    valid = list(read_sequences(data_dir / "hdfs" / "robust_log_valid.csv", fmt="hdfs"))
    history = random.Random(0).sample(train_all, min(n_train, len(train_all)))
    test = random.Random(1).sample(valid, n_test) if n_test and n_test < len(valid) else valid
    with tempfile.TemporaryDirectory(prefix="bench-blend-hdfs-") as tmp:
        train_with_progress("HDFS", history, Path(tmp) / "model", cache, config)
        detector = load_detector(Path(tmp) / "model", cache)
        return {"data": "HDFS", **blend_figures(detector, history, test, Path(tmp) / "store")}


def bgl_blend(data_dir: Path, cache: TemplateEmbeddingCache, config: TrainConfig) -> dict[str, Any]:
    windows = list(
        read_sequences(data_dir / "bgl" / "BGL_2k.log", fmt="raw", window=BGL_WINDOW, label_first_token=True)
    )
    cut = int(len(windows) * 0.8)
    history, test = windows[:cut], windows[cut:]
    with tempfile.TemporaryDirectory(prefix="bench-blend-bgl-") as tmp:
        train_with_progress("BGL_2k", history, Path(tmp) / "model", cache, config)
        detector = load_detector(Path(tmp) / "model", cache)
        return {"data": "BGL_2k", **blend_figures(detector, history, test, Path(tmp) / "store")}
