"""Point-in-time ranker features: every impression sees only the events that happened before it."""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass, field

import numpy as np

from models.data import FloatArray, IntArray
from models.simlog import SimLog
from streams.records import Event

RANKER_FEATURES: tuple[str, ...] = (
    "u_log_impressions", "u_log_clicks", "u_log_purchases", "u_ctr", "u_cvr",
    "i_log_impressions", "i_ctr", "i_cvr", "i_log_price", "i_age_bucket",
    "x_cat_affinity", "x_brand_affinity", "x_seen", "x_tt_dot",
    "c_hour_sin", "c_hour_cos",
    "position",
)
"""Column order of the training matrix; ``position`` is filled by the exported model, not by serving."""
POSITION = "position"
SERVING_FEATURES: tuple[str, ...] = tuple(f for f in RANKER_FEATURES if f != POSITION)
"""Column order of the ONNX ranker input ``features``."""
TT_DOT = RANKER_FEATURES.index("x_tt_dot")


@dataclass
class UserAgg:
    """Running counts for one user; the ranker's stand-in for ``state.features`` user aggregates."""

    impressions: int = 0
    clicks: int = 0
    purchases: int = 0
    categories: dict[int, int] = field(default_factory=dict)
    brands: dict[int, int] = field(default_factory=dict)
    seen: set[int] = field(default_factory=set)
    recent: deque[int] = field(default_factory=lambda: deque(maxlen=50))


@dataclass
class ItemAgg:
    """Running counts for one item."""

    impressions: int = 0
    clicks: int = 0
    purchases: int = 0


def smoothed_rate(hits: float, trials: float, prior: float, strength: float = 10.0) -> float:
    """Beta-smoothed rate that starts at ``prior`` and moves to ``hits / trials`` as evidence grows.

    >>> smoothed_rate(0, 0, 0.1), smoothed_rate(50, 100, 0.1)
    (0.1, 0.4636363636363636)
    """
    return (hits + prior * strength) / (trials + strength)


class PointInTimeFeatures:
    """Folds events in time order and answers feature rows for (user, item, time, position)."""

    def __init__(self, log: SimLog) -> None:
        self._items = log.dataset.items
        content = log.dataset.content
        self._category = content.category.argmax(axis=1)
        self._brand = content.brand
        self._age = content.age_bucket
        self._price = np.asarray([log.catalog[i].price if i in log.catalog else 0.0 for i in self._items.ids])
        self.users: dict[str, UserAgg] = {}
        self.item_stats: dict[int, ItemAgg] = {}

    def observe(self, e: Event) -> None:
        """Apply one event to the user and item aggregates."""
        i = self._items.get(e.item_id)
        if i < 0:
            return
        u = self.users.setdefault(e.user_id, UserAgg())
        it = self.item_stats.setdefault(i, ItemAgg())
        if e.type == "impression":
            u.impressions += 1
            it.impressions += 1
            return
        if e.type == "click":
            u.clicks += 1
            it.clicks += 1
        elif e.type == "purchase":
            u.purchases += 1
            it.purchases += 1
        c, b = int(self._category[i]), int(self._brand[i])
        u.categories[c] = u.categories.get(c, 0) + 1
        u.brands[b] = u.brands.get(b, 0) + 1
        u.seen.add(i)
        u.recent.append(i)

    def row(self, user_id: str, item: int, hour: float, position: int) -> list[float]:
        """The feature row in :data:`RANKER_FEATURES` order (``x_tt_dot`` left 0 for the caller to fill)."""
        u = self.users.get(user_id, UserAgg())
        it = self.item_stats.get(item, ItemAgg())
        positives = max(sum(u.categories.values()), 1)
        angle = 2.0 * math.pi * hour / 24.0
        return [
            math.log1p(u.impressions), math.log1p(u.clicks), math.log1p(u.purchases),
            smoothed_rate(u.clicks, u.impressions, 0.1), smoothed_rate(u.purchases, u.clicks, 0.3),
            math.log1p(it.impressions), smoothed_rate(it.clicks, it.impressions, 0.1),
            smoothed_rate(it.purchases, it.clicks, 0.3), math.log1p(float(self._price[item])),
            float(self._age[item]) / 20.0,
            u.categories.get(int(self._category[item]), 0) / positives,
            u.brands.get(int(self._brand[item]), 0) / positives,
            1.0 if item in u.seen else 0.0, 0.0,
            math.sin(angle), math.cos(angle),
            math.log1p(position),
        ]


@dataclass(frozen=True)
class RankerData:
    """Aligned with ``SimLog.impressions``: features, labels, time and each row's recent-item sequence."""

    x: FloatArray
    clicked: FloatArray
    purchased: FloatArray
    ts: IntArray
    user: IntArray
    recent: IntArray  # [N, seq_len] left-padded with -1


def build_ranker_data(log: SimLog, seq_len: int = 50) -> RankerData:
    """One feature row per impression, computed from the events strictly before it in the log order."""
    feats = PointInTimeFeatures(log)
    rows: list[list[float]] = []
    recent = np.full((len(log.impressions), seq_len), -1, dtype=np.int64)
    for e in log.events:
        item = log.dataset.items.get(e.item_id)
        if e.type == "impression" and item >= 0:
            hour = e.ts.hour + e.ts.minute / 60.0
            rows.append(feats.row(e.user_id, item, hour, e.position or 0))
            tail = list(feats.users.get(e.user_id, UserAgg()).recent)[-seq_len:]
            if tail:
                recent[len(rows) - 1, seq_len - len(tail) :] = tail
        feats.observe(e)
    imp = log.impressions
    x = np.asarray(rows, dtype=np.float32).reshape(len(rows), len(RANKER_FEATURES))
    return RankerData(x, imp.clicked, imp.purchased, imp.ts, imp.user, recent)
