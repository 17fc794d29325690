"""Accuracy figures on the shared public data (HDFS, BGL_2k) and on fresh synthetic data."""

from __future__ import annotations

import random
import re
import statistics
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
from bench_common import (
    evaluate,
    load_detector,
    metrics_summary,
    rounded,
    score_sequences,
    train_with_progress,
)

from detectors import Detector, LabelledSequence, TrainConfig
from detectors.embedding_cache import TemplateEmbeddingCache
from detectors.metrics import detection_metrics
from detectors.readers import read_sequences
from detectors.synthetic import generate

QUICK_HDFS_TRAIN = 2000
QUICK_EPOCHS = 3
RESAMPLE_RATIO = 0.03
RESAMPLE_SEEDS = 5
BGL_WINDOW = 20
KEYWORDS = r"ERROR|FATAL|fail|exception|timeout|refused|denied|panic"


def train_config(quick: bool) -> TrainConfig:
    if quick:
        return TrainConfig(dense_epochs=QUICK_EPOCHS, gated_epochs=QUICK_EPOCHS, seed=0)
    return TrainConfig(seed=0)


def read_hdfs(data_dir: Path, name: str) -> list[LabelledSequence]:
    return list(read_sequences(data_dir / "hdfs" / name, fmt="hdfs"))


def resample_metrics(labels: np.ndarray, probs: np.ndarray, preds: np.ndarray) -> dict[str, Any]:
    """All normals plus a seeded sample of anomalies making up RESAMPLE_RATIO of the whole."""
    normals = np.flatnonzero(labels == 0)
    anomalies = np.flatnonzero(labels == 1).tolist()
    k = max(1, round(RESAMPLE_RATIO / (1 - RESAMPLE_RATIO) * len(normals)))
    runs = []
    for seed in range(RESAMPLE_SEEDS):
        picked = np.r_[normals, random.Random(seed).sample(anomalies, k)]
        runs.append(metrics_summary(detection_metrics(labels[picked], probs[picked], preds[picked])))
    out: dict[str, Any] = {
        key: rounded(statistics.mean(r[key] for r in runs)) for key in ("precision", "recall", "f1", "auprc")
    }
    out.update(f1_min=min(r["f1"] for r in runs), n=len(normals) + k, anomalies=k, seeds=RESAMPLE_SEEDS)
    return out


def hdfs_accuracy(data_dir: Path, cache: TemplateEmbeddingCache, quick: bool) -> dict[str, Any]:
    train_all = read_hdfs(data_dir, "robust_log_train.csv")
    valid = read_hdfs(data_dir, "robust_log_valid.csv")
    train_seqs = random.Random(0).sample(train_all, QUICK_HDFS_TRAIN) if quick else train_all
    with tempfile.TemporaryDirectory(prefix="bench-hdfs-") as tmp:
        label = "HDFS (quick)" if quick else "HDFS"
        report = train_with_progress(label, train_seqs, Path(tmp), cache, train_config(quick))
        detector = load_detector(Path(tmp), cache)
        labels, probs, preds = score_sequences(detector, valid)
    seen = {s.lines for s in train_seqs}
    unseen = np.array([s.lines not in seen for s in valid])
    return {
        "mode": "quick: 2000 sampled train sessions, 3+3 epochs" if quick else "full: TrainConfig() defaults",
        "n_train_sessions": len(train_seqs),
        "unseen_means": "valid sequences not verbatim among the sessions trained on",
        "train_seconds": rounded(report.seconds, 1),
        "epochs_run": report.epochs_run,
        "all": metrics_summary(detection_metrics(labels, probs, preds)),
        "unseen": metrics_summary(detection_metrics(labels[unseen], probs[unseen], preds[unseen])),
        "resample_3pct": resample_metrics(labels, probs, preds),
    }


def bgl_accuracy(
    data_dir: Path, cache: TemplateEmbeddingCache, shipped: Detector, quick: bool
) -> dict[str, Any]:
    windows = list(
        read_sequences(data_dir / "bgl" / "BGL_2k.log", fmt="raw", window=BGL_WINDOW, label_first_token=True)
    )
    cut = int(len(windows) * 0.8)
    train_part, test = windows[:cut], windows[cut:]
    with tempfile.TemporaryDirectory(prefix="bench-bgl-") as tmp:
        label = "BGL_2k (quick)" if quick else "BGL_2k"
        report = train_with_progress(label, train_part, Path(tmp), cache, train_config(quick))
        fresh = evaluate(load_detector(Path(tmp), cache), test)
    return {
        "mode": f"{'quick: 3+3 epochs' if quick else 'full: TrainConfig() defaults'}; "
        f"windows of {BGL_WINDOW}, first 80% train, last 20% test",
        "n_train_windows": len(train_part),
        "n_test_windows": len(test),
        "train_seconds": rounded(report.seconds, 1),
        "epochs_run": report.epochs_run,
        "fresh": fresh,
        "shipped_zero_shot": evaluate(shipped, test),
    }


def keyword_baseline(sequences: list[LabelledSequence]) -> dict[str, Any]:
    pattern = re.compile(KEYWORDS)
    preds = np.array([int(any(pattern.search(line) for line in s.lines)) for s in sequences])
    labels = np.array([s.label for s in sequences], dtype=np.int64)
    return metrics_summary(detection_metrics(labels, preds.astype(float), preds))


def synthetic_accuracy(shipped: Detector, n: int = 2000, seed: int = 12345) -> dict[str, Any]:
    sequences = list(generate(n, seed=seed))
    labels, probs, preds = score_sequences(shipped, sequences)
    metrics = detection_metrics(labels, probs, preds, [s.category for s in sequences])
    return {
        "test_set": f"generate({n}, seed={seed})",
        "model": metrics_summary(metrics),
        "per_category_recall": {name: rounded(c.recall) for name, c in metrics.per_category.items()},
        "keyword_baseline": keyword_baseline(sequences),
        "keyword_regex": KEYWORDS,
    }
