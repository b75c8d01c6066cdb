"""Replay evaluation, the pure part: which interactions a replay streams and asks about, and its metrics.

A replay streams a dataset's interactions in time order and, just before each sampled held-out
interaction, asks the serving path for that user's list; :func:`list_metrics` scores such a list, and
:func:`compare` sets online against the offline evaluation of the same interactions.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from models.data import FloatArray, IntArray, Interactions
from models.evaluate import ndcg_at_k, target_ranks
from models.splits import Split

F64 = npt.NDArray[np.float64]

#: Online and offline metrics must agree within this relative difference.
TOLERANCE = 0.05


@dataclass(frozen=True)
class ReplayPlan:
    """``stream``: rows of the dataset's interactions in the order they are produced (global time order,
    each user's own order kept); ``asks``: positions in ``stream`` to ask before; ``users``: who is streamed."""

    stream: IntArray
    asks: IntArray
    users: IntArray

    @property
    def ask_rows(self) -> IntArray:
        return self.stream[self.asks]


def replay_plan(
    inter: Interactions,
    split: Split,
    *,
    max_users: int | None = None,
    sample_rate: float = 1.0,
    seed: int = 0,
) -> ReplayPlan:
    """Pick users (all with a held-out test interaction, or ``max_users`` of them), stream all their
    interactions in time order, and ask before a ``sample_rate`` share of their held-out interactions.

    ``inter`` is sorted by user then time (ties as the online state orders them), so sorting stably by time
    keeps each user's order; the held-out rows are ``split.test`` (each user's last interaction).

    >>> from models.splits import leave_last_out
    >>> i = Interactions.build(np.array([0, 0, 0, 1, 1, 1]), np.array([5, 6, 7, 1, 2, 3]), np.array([1, 4, 6, 2, 3, 5]))
    >>> p = replay_plan(i, leave_last_out(i, 2, 8))
    >>> i.item[p.stream].tolist(), i.item[p.ask_rows].tolist()
    ([5, 1, 2, 6, 3, 7], [3, 7])
    """
    if not 0.0 < sample_rate <= 1.0:
        raise ValueError(f"sample_rate must be in (0, 1], got {sample_rate}")
    rng = np.random.default_rng(seed)
    held_users = np.unique(split.test.user)
    if max_users is not None and max_users < held_users.shape[0]:
        held_users = np.sort(rng.choice(held_users, size=max_users, replace=False))
    rows = np.flatnonzero(np.isin(inter.user, held_users))
    stream = rows[np.argsort(inter.ts[rows], kind="stable")]
    last = np.zeros(stream.shape[0], dtype=bool)  # the held-out row of a user is their last one
    last_of_user = {int(u): j for j, u in enumerate(inter.user[stream].tolist())}
    last[list(last_of_user.values())] = True
    asked = np.flatnonzero(last)
    keep = rng.random(asked.shape[0]) < sample_rate
    return ReplayPlan(stream.astype(np.int64), asked[keep].astype(np.int64), held_users.astype(np.int64))


@dataclass(frozen=True)
class Metrics:
    """Per-interaction hit and NDCG at ``k``; means over the interactions."""

    hits: F64
    ndcg: F64
    k: int

    def summary(self) -> dict[str, float]:
        n = self.hits.shape[0]
        return {
            f"hr@{self.k}": float(self.hits.mean()) if n else 0.0,
            f"ndcg@{self.k}": float(self.ndcg.mean()) if n else 0.0,
            "interactions": float(n),
        }


def list_metrics(lists: Sequence[Sequence[str]], targets: Sequence[str], k: int = 10) -> Metrics:
    """Hit and NDCG@k of each served list against its one held-out item.

    >>> m = list_metrics([["a", "b"], ["c", "d"], ["x"]], ["b", "c", "y"], k=10)
    >>> m.hits.tolist(), [round(v, 4) for v in m.ndcg.tolist()]
    ([1.0, 1.0, 0.0], [0.6309, 1.0, 0.0])
    """
    hits = np.zeros(len(targets))
    ndcg = np.zeros(len(targets))
    for j, (items, target) in enumerate(zip(lists, targets, strict=True)):
        top = list(items[:k])
        if target in top:
            rank = top.index(target) + 1
            hits[j], ndcg[j] = 1.0, 1.0 / math.log2(rank + 1.0)
    return Metrics(hits, ndcg, k)


def offline_metrics(scores: FloatArray, seen: Sequence[Sequence[int]], targets: IntArray, k: int = 10) -> Metrics:
    """The offline protocol of ``models.evaluate``: full ranking, every seen item excluded, expected rank on ties.

    ``scores[j]`` ranks every item for interaction ``j``; ``seen[j]`` are the items before it.

    >>> s = np.array([[0.9, 0.8, 0.1], [0.2, 0.3, 0.9]], dtype=np.float32)
    >>> m = offline_metrics(s, [[0], [2]], np.array([1, 0]), k=1)
    >>> m.hits.tolist(), m.ndcg.tolist()
    ([1.0, 0.0], [1.0, 0.0])
    """
    masked = np.array(scores, dtype=np.float32, copy=True)
    for j, items in enumerate(seen):
        masked[j, list(items)] = -np.inf
    ranks = target_ranks(masked, np.arange(len(targets)), np.asarray(targets, dtype=np.int64))
    hits = (ranks <= k).astype(np.float64)
    ndcg = np.array([ndcg_at_k(ranks[j : j + 1], 1, k) for j in range(len(targets))])
    return Metrics(hits, ndcg, k)


def top_k(scores: FloatArray, seen: Sequence[Sequence[int]], k: int = 10) -> list[list[int]]:
    """The offline top-k item indices of each row, seen items excluded (stable on ties)."""
    out = []
    for row, items in zip(scores, seen, strict=True):
        masked = np.array(row, dtype=np.float64, copy=True)
        masked[list(items)] = -np.inf
        out.append(np.argsort(-masked, kind="stable")[:k].tolist())
    return out


def relative_difference(online: float, offline: float) -> float:
    """``|online - offline| / offline`` (0 when both are 0, infinite when only offline is).

    >>> relative_difference(0.21, 0.2), relative_difference(0.0, 0.0), relative_difference(0.1, 0.0)
    (0.05, 0.0, inf)
    """
    if offline == 0.0:
        return 0.0 if online == 0.0 else math.inf
    return round(abs(online - offline) / abs(offline), 12)


def compare(online: Metrics, offline: Metrics, tolerance: float = TOLERANCE) -> dict[str, object]:
    """Both summaries, the relative difference of each metric and whether all are within ``tolerance``."""
    on, off = online.summary(), offline.summary()
    names = [f"hr@{online.k}", f"ndcg@{online.k}"]
    rel = {name: relative_difference(on[name], off[name]) for name in names}
    same = (
        float(np.mean((online.hits == offline.hits) & np.isclose(online.ndcg, offline.ndcg)))
        if online.hits.size
        else 1.0
    )
    return {
        "online": {n: round(on[n], 6) for n in names},
        "offline": {n: round(off[n], 6) for n in names},
        "relative_difference": {n: round(v, 6) for n, v in rel.items()},
        "interaction_agreement": round(same, 6),
        "tolerance": tolerance,
        "pass": all(v <= tolerance for v in rel.values()),
    }
