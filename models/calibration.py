"""Probability quality: AUC, log loss, expected calibration error, and temperature scaling."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
from scipy.optimize import minimize_scalar
from scipy.stats import rankdata

Arr = npt.NDArray[np.floating]


def auc(labels: Arr, scores: Arr) -> float:
    """Area under the ROC curve via the rank statistic (ties averaged); 0.5 when one class is absent.

    >>> auc(np.array([0, 0, 1, 1]), np.array([0.1, 0.4, 0.35, 0.8]))
    0.75
    """
    y = np.asarray(labels) > 0.5
    n_pos, n_neg = int(y.sum()), int((~y).sum())
    if n_pos == 0 or n_neg == 0:
        return 0.5
    ranks = rankdata(scores)
    return float((ranks[y].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def log_loss(labels: Arr, probs: Arr, eps: float = 1e-7) -> float:
    """Mean binary cross-entropy.

    >>> round(log_loss(np.array([1.0, 0.0]), np.array([0.9, 0.1])), 4)
    0.1054
    """
    p = np.clip(np.asarray(probs, dtype=np.float64), eps, 1 - eps)
    y = np.asarray(labels, dtype=np.float64)
    return float(-np.mean(y * np.log(p) + (1 - y) * np.log(1 - p)))


def expected_calibration_error(labels: Arr, probs: Arr, bins: int = 15) -> float:
    """Weighted mean |accuracy - confidence| over equal-width probability bins.

    >>> expected_calibration_error(np.array([1, 0, 1, 0]), np.array([0.5, 0.5, 0.5, 0.5]))
    0.0
    >>> round(expected_calibration_error(np.array([1, 1, 1, 1]), np.array([0.5, 0.5, 0.5, 0.5])), 4)
    0.5
    """
    p = np.asarray(probs, dtype=np.float64)
    y = np.asarray(labels, dtype=np.float64)
    idx = np.minimum((p * bins).astype(np.int64), bins - 1)
    total = 0.0
    for b in range(bins):
        mask = idx == b
        if mask.any():
            total += mask.sum() * abs(y[mask].mean() - p[mask].mean())
    return float(total / max(p.shape[0], 1))


def _sigmoid(z: Arr) -> Arr:
    return np.asarray(1.0 / (1.0 + np.exp(-np.clip(z, -60.0, 60.0))))


def fit_temperature(logits: Arr, labels: Arr, scale: Arr | None = None) -> float:
    """Temperature ``T`` minimising the log loss of ``scale * sigmoid(logits / T)`` (``scale`` defaults to 1).

    ``scale`` lets the purchase-given-click head be calibrated through the product p(click) x p(purchase|click).
    """
    z = np.asarray(logits, dtype=np.float64)
    s = np.ones_like(z) if scale is None else np.asarray(scale, dtype=np.float64)

    def loss(log_t: float) -> float:
        return log_loss(labels, s * _sigmoid(z / np.exp(log_t)))

    res = minimize_scalar(loss, bounds=(-3.0, 3.0), method="bounded")
    return float(np.exp(res.x))
