"""Binary detection metrics, computed with numpy so evaluation needs no extra dependency."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from pydantic import BaseModel


class CategoryRecall(BaseModel):
    n: int
    recall: float


class DetectionMetrics(BaseModel):
    precision: float
    recall: float
    f1: float
    auprc: float
    accuracy: float
    n: int
    anomalies: int
    true_positives: int
    false_positives: int
    true_negatives: int
    false_negatives: int
    per_category: dict[str, CategoryRecall] = {}


def average_precision(labels: np.ndarray, scores: np.ndarray) -> float:
    """Area under the precision-recall curve, as the step-wise average precision."""
    positives = int(labels.sum())
    if positives == 0:
        return 0.0
    order = np.argsort(-scores, kind="stable")
    sorted_labels = labels[order]
    sorted_scores = scores[order]
    true_pos = np.cumsum(sorted_labels)
    # Only the last position of each run of tied scores is a real operating point.
    distinct = np.r_[np.diff(sorted_scores) != 0, True]
    tp_at = true_pos[distinct]
    predicted_at = (np.arange(1, len(labels) + 1))[distinct]
    precision = tp_at / predicted_at
    recall = tp_at / positives
    recall_gain = np.diff(np.r_[0.0, recall])
    return float(np.sum(recall_gain * precision))


def detection_metrics(
    labels: Sequence[int] | np.ndarray,
    probabilities: Sequence[float] | np.ndarray,
    predictions: Sequence[int] | np.ndarray,
    categories: Sequence[str | None] | None = None,
) -> DetectionMetrics:
    """Precision, recall, F1, AUPRC, accuracy and confusion counts for the anomalous class.

    With `categories`, `per_category` gives the share of each category's sequences whose
    verdict matched their label (for anomalous categories, that is recall).
    """
    y = np.asarray(labels, dtype=np.int64)
    p = np.asarray(probabilities, dtype=np.float64)
    pred = np.asarray(predictions, dtype=np.int64)
    tp = int(((pred == 1) & (y == 1)).sum())
    fp = int(((pred == 1) & (y == 0)).sum())
    tn = int(((pred == 0) & (y == 0)).sum())
    fn = int(((pred == 0) & (y == 1)).sum())
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    per_category: dict[str, CategoryRecall] = {}
    if categories is not None:
        for name in sorted({c for c in categories if c}):
            idx = np.array([c == name for c in categories])
            hits = int((pred[idx] == y[idx]).sum())
            per_category[name] = CategoryRecall(n=int(idx.sum()), recall=hits / int(idx.sum()))
    return DetectionMetrics(
        precision=precision,
        recall=recall,
        f1=f1,
        auprc=average_precision(y, p),
        accuracy=(tp + tn) / len(y) if len(y) else 0.0,
        n=len(y),
        anomalies=int(y.sum()),
        true_positives=tp,
        false_positives=fp,
        true_negatives=tn,
        false_negatives=fn,
        per_category=per_category,
    )


def best_f1_threshold(labels: np.ndarray, probabilities: np.ndarray) -> float:
    """The decision threshold that maximises F1, placed midway between neighbouring scores.

    Midpoints rather than the scores themselves leave a margin on both sides, so a tiny
    shift in a probability at scoring time does not flip the verdict.
    """
    candidates = np.unique(probabilities)
    if len(candidates) == 1 or labels.sum() == 0:
        return 0.5
    cuts = np.r_[(candidates[:-1] + candidates[1:]) / 2]
    best_cut, best_f1 = 0.5, -1.0
    positives = labels.sum()
    for cut in cuts:
        pred = probabilities >= cut
        tp = float((pred & (labels == 1)).sum())
        predicted = float(pred.sum())
        f1 = 2 * tp / (predicted + positives) if predicted + positives else 0.0
        if f1 > best_f1 + 1e-12:
            best_cut, best_f1 = float(cut), f1
    return best_cut
