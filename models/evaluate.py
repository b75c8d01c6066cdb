"""Full-ranking offline evaluation over all items with each user's seen items excluded."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from models.data import FloatArray, IntArray
from models.splits import Split, Stage, user_item_matrix

Scorer = Callable[[IntArray], FloatArray]
"""Maps a batch of user indices to a ``[batch, n_items]`` score matrix (higher is better)."""

F64 = npt.NDArray[np.float64]


@dataclass(frozen=True)
class EvalResult:
    """Aggregate metrics plus per-user values (for breakdowns by history length)."""

    metrics: dict[str, float]
    users: IntArray
    history_len: IntArray
    per_user: dict[str, F64]


def target_ranks(scores: FloatArray, rows: IntArray, items: IntArray) -> F64:
    """1-based rank of ``items[j]`` in row ``rows[j]``; ties count as half above (expected rank, random tie-break).

    >>> s = np.array([[0.1, 0.9, 0.5, 0.5]], dtype=np.float32)
    >>> target_ranks(s, np.array([0, 0, 0]), np.array([1, 2, 0])).tolist()
    [1.0, 2.5, 4.0]
    """
    t = scores[rows, items][:, None]
    block = scores[rows]
    greater = (block > t).sum(axis=1)
    ties = (block == t).sum(axis=1) - 1
    ranks: F64 = (greater + 0.5 * ties + 1.0).astype(np.float64)
    return ranks


def ndcg_at_k(ranks: F64, n_targets: int, k: int) -> float:
    """Binary-relevance NDCG@k of one user's target ranks.

    >>> round(ndcg_at_k(np.array([1.0]), 1, 10), 4), round(ndcg_at_k(np.array([3.0]), 1, 10), 4)
    (1.0, 0.5)
    >>> ndcg_at_k(np.array([11.0]), 1, 10)
    0.0
    >>> round(ndcg_at_k(np.array([1.0, 3.0]), 2, 10), 4)
    0.9197
    """
    hit = ranks[ranks <= k]
    dcg = float(np.sum(1.0 / np.log2(hit + 1.0)))
    idcg = float(np.sum(1.0 / np.log2(np.arange(1, min(n_targets, k) + 1) + 1.0)))
    return dcg / idcg if idcg > 0 else 0.0


def intra_list_diversity(top: IntArray, categories: FloatArray) -> F64:
    """Mean pairwise ``1 - cosine`` of item category vectors within each list (one value per row).

    >>> cats = np.array([[1, 0], [1, 0], [0, 1]], dtype=np.float32)
    >>> intra_list_diversity(np.array([[0, 1, 2]]), cats).round(4).tolist()
    [0.6667]
    """
    vecs = categories[top].astype(np.float64)
    norms = np.linalg.norm(vecs, axis=2, keepdims=True)
    unit = np.divide(vecs, norms, out=np.zeros_like(vecs), where=norms > 0)
    sim = unit @ unit.transpose(0, 2, 1)
    k = top.shape[1]
    iu = np.triu_indices(k, 1)
    return np.asarray(1.0 - sim[:, iu[0], iu[1]].mean(axis=1), dtype=np.float64)


def _top_k(scores: FloatArray, k: int) -> IntArray:
    part = np.argpartition(-scores, k - 1, axis=1)[:, :k]
    order = np.argsort(-np.take_along_axis(scores, part, axis=1), axis=1, kind="stable")
    return np.asarray(np.take_along_axis(part, order, axis=1), dtype=np.int64)


def _user_metrics(ranks: F64, k: int, recall_k: int) -> dict[str, float]:
    n = ranks.shape[0]
    return {
        f"ndcg@{k}": ndcg_at_k(ranks, n, k),
        f"hr@{k}": float(np.any(ranks <= k)),
        f"recall@{recall_k}": float(np.sum(ranks <= recall_k)) / n,
        "mrr": float(1.0 / ranks.min()),
    }


def evaluate(
    scorer: Scorer,
    split: Split,
    stage: Stage,
    categories: FloatArray,
    *,
    k: int = 10,
    recall_k: int = 50,
    batch_size: int = 256,
) -> EvalResult:
    """Score every item for every user with a target in ``stage``; seen (history) items are never recommended."""
    history = user_item_matrix(split.history(stage), split.n_users, split.n_items)
    targets = user_item_matrix(split.targets(stage), split.n_users, split.n_items)
    users = np.flatnonzero(np.diff(targets.indptr) > 0).astype(np.int64)
    per_user: dict[str, list[float]] = {}
    seen_top: list[IntArray] = []
    ild: list[F64] = []
    for start in range(0, users.shape[0], batch_size):
        batch = users[start : start + batch_size]
        scores = np.array(scorer(batch), dtype=np.float32, copy=True)
        hist = history[batch]
        scores[np.repeat(np.arange(batch.shape[0]), np.diff(hist.indptr)), hist.indices] = -np.inf
        tgt = targets[batch]
        rows = np.repeat(np.arange(batch.shape[0]), np.diff(tgt.indptr))
        ranks = target_ranks(scores, rows, tgt.indices.astype(np.int64))
        for r in range(batch.shape[0]):
            for name, value in _user_metrics(ranks[rows == r], k, recall_k).items():
                per_user.setdefault(name, []).append(value)
        top = _top_k(scores, k)
        seen_top.append(top)
        ild.append(intra_list_diversity(top, categories))
    per = {name: np.asarray(v, dtype=np.float64) for name, v in per_user.items()}
    per["ild"] = np.concatenate(ild) if ild else np.zeros(0)
    metrics = {name: float(v.mean()) if v.size else 0.0 for name, v in per.items()}
    tops = np.concatenate(seen_top) if seen_top else np.zeros((0, k), dtype=np.int64)
    metrics["coverage"] = float(np.unique(tops).shape[0] / split.n_items)
    metrics["users"] = float(users.shape[0])
    return EvalResult(metrics, users, np.diff(history.indptr)[users].astype(np.int64), per)
