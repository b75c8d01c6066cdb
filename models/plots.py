"""PNG plots of an evaluation: metrics by model, and NDCG@10 by user history length."""

from __future__ import annotations

from collections.abc import Mapping
from itertools import pairwise
from pathlib import Path

import numpy as np

from models.evaluate import EvalResult

HISTORY_BINS: tuple[int, ...] = (0, 20, 50, 100, 200, 10**9)
BAR_METRICS: tuple[str, ...] = ("ndcg@10", "hr@10", "recall@50", "mrr", "coverage")


def ndcg_by_history(result: EvalResult, bins: tuple[int, ...] = HISTORY_BINS) -> list[float]:
    """Mean NDCG@10 of the users whose history length falls in each ``[bins[i], bins[i+1])`` (NaN if none)."""
    out: list[float] = []
    for lo, hi in pairwise(bins):
        mask = (result.history_len >= lo) & (result.history_len < hi)
        out.append(float(result.per_user["ndcg@10"][mask].mean()) if mask.any() else float("nan"))
    return out


def plot_report(per_model: Mapping[str, EvalResult], title: str, path: Path) -> None:
    """Write a two-panel PNG to ``path``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(13, 4.8))
    names = list(per_model)
    width = 0.8 / max(len(names), 1)
    x = np.arange(len(BAR_METRICS))
    for i, name in enumerate(names):
        vals = [per_model[name].metrics[m] for m in BAR_METRICS]
        left.bar(x + i * width, vals, width, label=name)
    left.set_xticks(x + width * (len(names) - 1) / 2, BAR_METRICS)
    left.set_title("metrics by model (test, full ranking)")
    left.legend(fontsize=8)
    labels = [f"{lo}-{hi - 1}" if hi < 10**9 else f"{lo}+" for lo, hi in pairwise(HISTORY_BINS)]
    for name in names:
        right.plot(labels, ndcg_by_history(per_model[name]), marker="o", label=name)
    right.set_xlabel("user history length (interactions before the target)")
    right.set_ylabel("NDCG@10")
    right.set_title("NDCG@10 by history length")
    right.legend(fontsize=8)
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
