"""Tests for detectors.calibration and detectors.metrics: Platt scaling, threshold, AP, counts."""

from __future__ import annotations

import numpy as np
import pytest

from detectors.calibration import Calibration, fit_calibration, fit_platt
from detectors.metrics import (
    CategoryRecall,
    average_precision,
    best_f1_threshold,
    detection_metrics,
)


def _platt_data(scale: float, bias: float, n: int = 20_000, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    logits = rng.normal(0.0, 2.0, size=n)
    probabilities = 1.0 / (1.0 + np.exp(-(scale * logits + bias)))
    labels = (rng.random(n) < probabilities).astype(np.int64)
    return logits, labels


# -- Platt scaling --------------------------------------------------------------------------------


def test_platt_fit_recovers_a_known_scale_and_bias() -> None:
    logits, labels = _platt_data(scale=2.0, bias=-1.0)
    scale, bias = fit_platt(logits, labels)
    assert scale == pytest.approx(2.0, abs=0.15)
    assert bias == pytest.approx(-1.0, abs=0.15)


def test_platt_fit_undoes_a_shifted_logit_such_as_class_reweighting_causes() -> None:
    logits, labels = _platt_data(scale=0.5, bias=1.5, seed=1)
    scale, bias = fit_platt(logits, labels)
    assert scale == pytest.approx(0.5, abs=0.15)
    assert bias == pytest.approx(1.5, abs=0.15)


@pytest.mark.parametrize("label", [0, 1])
def test_platt_fit_on_one_class_returns_the_identity(label: int) -> None:
    logits = np.array([-2.0, 0.5, 3.0])
    assert fit_platt(logits, np.full(3, label)) == (1.0, 0.0)


def test_platt_fit_stays_finite_and_positive_on_perfectly_separable_data() -> None:
    logits = np.array([-3.0, -2.0, -1.0, 1.0, 2.0, 3.0])
    scale, bias = fit_platt(logits, np.array([0, 0, 0, 1, 1, 1]))
    assert np.isfinite(scale) and np.isfinite(bias)
    assert scale > 1.0  # sharpened, but held back by the ridge
    assert abs(bias) < 1e-3  # symmetric data needs no shift


def test_fit_calibration_on_one_class_keeps_identity_scaling_and_the_default_threshold() -> None:
    logits = np.array([-1.0, 0.0, 2.0])
    calibration = fit_calibration(logits, np.zeros(3, dtype=np.int64), source="the validation split")
    assert calibration == Calibration(
        scale=1.0,
        bias=0.0,
        threshold=0.5,
        threshold_source="max F1 on the validation split (3 sequences)",
        fitted_on=3,
    )
    np.testing.assert_allclose(calibration.probability(logits), 1.0 / (1.0 + np.exp(-logits)))


def test_fit_calibration_names_its_source_and_places_the_threshold_between_the_classes() -> None:
    logits = np.array([-3.0, -2.0, -1.5, 1.0, 2.5, 4.0])
    labels = np.array([0, 0, 0, 1, 1, 1])
    calibration = fit_calibration(logits, labels, source="the validation split")
    assert calibration.threshold_source == "max F1 on the validation split (6 sequences)"
    assert calibration.fitted_on == 6
    probabilities = calibration.probability(logits)
    assert ((probabilities >= calibration.threshold) == labels.astype(bool)).all()


def test_calibrated_probability_is_the_sigmoid_of_the_scaled_shifted_logit() -> None:
    calibration = Calibration(scale=2.0, bias=-1.0)
    np.testing.assert_allclose(
        calibration.probability(np.array([0.0, 0.5, 1.0])), [1 / (1 + np.e), 0.5, 1 / (1 + np.exp(-1.0))]
    )


def test_calibrated_probability_does_not_overflow_on_extreme_logits() -> None:
    with np.errstate(over="raise"):
        probabilities = Calibration(scale=10.0).probability(np.array([-1e6, 1e6]))
    assert probabilities[0] == pytest.approx(0.0, abs=1e-25)
    assert probabilities[1] == 1.0


# -- threshold ------------------------------------------------------------------------------------


def test_best_f1_threshold_picks_the_midpoint_below_the_lowest_anomaly_worth_flagging() -> None:
    labels = np.array([0, 0, 1, 0, 1, 1])
    probabilities = np.array([0.1, 0.2, 0.3, 0.4, 0.8, 0.9])
    # Cuts 0.15/0.25/0.35/0.6/0.85 give F1 0.75/0.857/0.667/0.8/0.5: 0.25 wins.
    assert best_f1_threshold(labels, probabilities) == pytest.approx(0.25)


def test_best_f1_threshold_separates_perfectly_separable_scores() -> None:
    labels = np.array([1, 0, 1, 0])
    probabilities = np.array([0.7, 0.3, 0.9, 0.1])
    assert best_f1_threshold(labels, probabilities) == pytest.approx(0.5)
    probabilities = np.array([0.62, 0.3, 0.9, 0.1])
    assert best_f1_threshold(labels, probabilities) == pytest.approx(0.46)


def test_best_f1_threshold_defaults_to_one_half_without_anomalies_or_without_spread() -> None:
    assert best_f1_threshold(np.array([0, 0, 0]), np.array([0.1, 0.2, 0.3])) == 0.5
    assert best_f1_threshold(np.array([0, 1, 1]), np.array([0.7, 0.7, 0.7])) == 0.5


# -- average precision ----------------------------------------------------------------------------


def test_average_precision_matches_a_hand_computed_value() -> None:
    labels = np.array([1, 0, 1, 0])
    scores = np.array([0.9, 0.8, 0.7, 0.1])
    # Recall 1/2 at precision 1, recall 1 at precision 2/3: 0.5 * 1 + 0.5 * 2/3.
    assert average_precision(labels, scores) == pytest.approx(5 / 6)


def test_average_precision_treats_tied_scores_as_one_operating_point() -> None:
    labels = np.array([0, 1, 1])
    scores = np.array([0.5, 0.5, 0.9])
    # After 0.9: P=1 at R=1/2; after the tie at 0.5: P=2/3 at R=1. Order within the tie is irrelevant.
    assert average_precision(labels, scores) == pytest.approx(5 / 6)
    assert average_precision(labels[[1, 0, 2]], scores[[1, 0, 2]]) == pytest.approx(5 / 6)


def test_average_precision_is_one_for_a_perfect_ranking_and_zero_without_positives() -> None:
    assert average_precision(np.array([0, 1, 0, 1]), np.array([0.1, 0.8, 0.2, 0.9])) == 1.0
    assert average_precision(np.array([0, 0]), np.array([0.1, 0.8])) == 0.0


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_average_precision_agrees_with_scikit_learn_on_random_data(seed: int) -> None:
    sklearn_metrics = pytest.importorskip("sklearn.metrics")
    rng = np.random.default_rng(seed)
    labels = (rng.random(500) < 0.2).astype(np.int64)
    scores = np.round(rng.random(500) + 0.3 * labels, 2)  # rounding makes plenty of ties
    expected = sklearn_metrics.average_precision_score(labels, scores)
    assert average_precision(labels, scores) == pytest.approx(expected, abs=1e-12)


# -- detection_metrics ----------------------------------------------------------------------------


def test_detection_metrics_counts_the_confusion_matrix_and_per_category_recall() -> None:
    metrics = detection_metrics(
        labels=[1, 1, 0, 0, 1],
        probabilities=[0.9, 0.4, 0.2, 0.6, 0.8],
        predictions=[1, 0, 0, 1, 1],
        categories=["disk", "disk", "normal", "normal", "network"],
    )
    counts = metrics.model_dump(
        include={"n", "anomalies", "true_positives", "false_positives", "true_negatives", "false_negatives"}
    )
    assert counts == {
        "n": 5,
        "anomalies": 3,
        "true_positives": 2,
        "false_positives": 1,
        "true_negatives": 1,
        "false_negatives": 1,
    }
    rates = metrics.model_dump(include={"precision", "recall", "f1", "accuracy", "auprc"})
    # Ranked by probability the labels read 1, 1, 0, 1, 0: AP = (1 + 1 + 3/4) / 3.
    assert rates == pytest.approx(
        {"precision": 2 / 3, "recall": 2 / 3, "f1": 2 / 3, "accuracy": 3 / 5, "auprc": 11 / 12}
    )
    assert metrics.per_category == {
        "disk": CategoryRecall(n=2, recall=0.5),
        "network": CategoryRecall(n=1, recall=1.0),
        "normal": CategoryRecall(n=2, recall=0.5),
    }


def test_detection_metrics_skips_sequences_without_a_category() -> None:
    metrics = detection_metrics([1, 0, 1], [0.9, 0.1, 0.2], [1, 0, 0], categories=["disk", None, None])
    assert metrics.per_category == {"disk": CategoryRecall(n=1, recall=1.0)}


def test_detection_metrics_without_predicted_or_actual_positives_reports_zeros_not_errors() -> None:
    metrics = detection_metrics([0, 0], [0.1, 0.2], [0, 0])
    assert metrics.model_dump(include={"precision", "recall", "f1", "auprc", "accuracy"}) == {
        "precision": 0.0,
        "recall": 0.0,
        "f1": 0.0,
        "auprc": 0.0,
        "accuracy": 1.0,
    }
    assert metrics.per_category == {}
