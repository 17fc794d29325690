"""Probability calibration and the decision threshold, both fitted on validation data only."""

from __future__ import annotations

import math

import numpy as np
import torch
from pydantic import BaseModel

from detectors.metrics import best_f1_threshold


class Calibration(BaseModel):
    """Platt scaling of the anomaly logit, and the threshold on the calibrated probability.

    Platt scaling (a scale and a bias) rather than a bare temperature: training reweights
    the rare class, which shifts the logit, and only a bias can undo that shift.
    """

    scale: float = 1.0
    bias: float = 0.0
    threshold: float = 0.5
    threshold_source: str = "default 0.5 (not fitted)"
    fitted_on: int = 0  # validation sequences used

    def probability(self, logits: np.ndarray) -> np.ndarray:
        z = np.clip(self.scale * logits + self.bias, -60.0, 60.0)
        return 1.0 / (1.0 + np.exp(-z))


def fit_platt(logits: np.ndarray, labels: np.ndarray, *, steps: int = 200) -> tuple[float, float]:
    """Minimise the log-loss of sigmoid(a * logit + b) on held-out data."""
    if labels.min() == labels.max():
        return 1.0, 0.0  # one class only: nothing to calibrate against
    x = torch.tensor(logits, dtype=torch.float64)
    y = torch.tensor(labels, dtype=torch.float64)
    scale = torch.ones((), dtype=torch.float64, requires_grad=True)
    bias = torch.zeros((), dtype=torch.float64, requires_grad=True)
    optimiser = torch.optim.LBFGS([scale, bias], lr=0.5, max_iter=steps, line_search_fn="strong_wolfe")

    def closure() -> torch.Tensor:
        optimiser.zero_grad()
        # A small ridge on the scale keeps it finite when validation is perfectly separable.
        loss = torch.nn.functional.binary_cross_entropy_with_logits(scale * x + bias, y) + 1e-4 * scale**2
        loss.backward()
        return loss

    optimiser.step(closure)
    a, b = float(scale.detach()), float(bias.detach())
    if not (math.isfinite(a) and math.isfinite(b)) or a <= 0:
        return 1.0, 0.0
    return a, b


def fit_calibration(logits: np.ndarray, labels: np.ndarray, *, source: str) -> Calibration:
    """Fit Platt scaling, then the F1-optimal threshold on the calibrated probabilities."""
    scale, bias = fit_platt(logits, labels)
    calibration = Calibration(scale=scale, bias=bias, fitted_on=len(labels))
    probabilities = calibration.probability(logits)
    calibration.threshold = best_f1_threshold(labels, probabilities)
    calibration.threshold_source = f"max F1 on {source} ({len(labels)} sequences)"
    return calibration
