"""Point-in-time ranker features: every impression sees only the events that happened before it."""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from models.data import FloatArray, IntArray
from models.simlog import SimLog
from state.feature_config import EventView, FeatureConfig
from state.features import (
    USER_FEATURE_NAMES,
    USER_ITEM_FEATURE_NAMES,
    UserState,
    apply_events,
    new_user_state,
    user_features,
    user_item_features,
)
from state.items import ItemRecord, count_events
from streams.records import Event

ITEM_FEATURE_NAMES: tuple[str, ...] = (
    "i_log_impressions", "i_log_clicks", "i_ctr", "i_cvr", "i_log_price", "i_log_age_days",
)
CONTEXT_FEATURE_NAMES: tuple[str, ...] = ("c_hour_sin", "c_hour_cos")
POSITION = "position"
TT_DOT_NAME = "x_tt_dot"
RANKER_FEATURES: tuple[str, ...] = (
    *(f"u_{n}" for n in USER_FEATURE_NAMES),
    *ITEM_FEATURE_NAMES,
    *USER_ITEM_FEATURE_NAMES,
    TT_DOT_NAME,
    *CONTEXT_FEATURE_NAMES,
    POSITION,
)
"""Column order of the training matrix; ``position`` is filled by the exported model, not by serving."""
SERVING_FEATURES: tuple[str, ...] = tuple(f for f in RANKER_FEATURES if f != POSITION)
"""Column order of the ONNX ranker input ``features``."""
TT_DOT = RANKER_FEATURES.index(TT_DOT_NAME)


def item_features(item: ItemRecord, now: float) -> list[float]:
    """Item statistics in :data:`ITEM_FEATURE_NAMES` order."""
    c = item.counts
    return [
        math.log1p(c.impressions), math.log1p(c.clicks), item.ctr(), item.conversion(),
        math.log1p(item.price), math.log1p(item.age_s(now) / 86400.0),
    ]


def context_features(now: float) -> list[float]:
    """Hour of day (UTC) on the unit circle."""
    angle = 2.0 * math.pi * ((now / 3600.0) % 24.0) / 24.0
    return [math.sin(angle), math.cos(angle)]


def serving_row(
    user: Mapping[str, float], user_item: Mapping[str, float], item: ItemRecord, now: float, tt_dot: float
) -> list[float]:
    """One row of the ONNX ranker input in :data:`SERVING_FEATURES` order.

    ``user`` is ``state.features.user_features(...)`` and ``user_item`` is ``state.features.user_item_features(...)``
    at ``now``: the functions the streaming agents keep up to date, so training and serving cannot drift.
    """
    return [
        *(user[n] for n in USER_FEATURE_NAMES),
        *item_features(item, now),
        *(user_item[n] for n in USER_ITEM_FEATURE_NAMES),
        tt_dot,
        *context_features(now),
    ]


class PointInTimeFeatures:
    """Folds events in time order with the streaming feature code and answers training rows."""

    def __init__(self, log: SimLog, cfg: FeatureConfig) -> None:
        self.cfg = cfg
        self.catalog = {i: ItemRecord.from_update(u) for i, u in log.catalog.items()}
        self._known = frozenset(self.catalog)
        self.users: dict[str, UserState] = {}
        self.recent: dict[str, deque[int]] = {}
        self._items = log.dataset.items
        self._user_cache: tuple[str, float, Mapping[str, float]] | None = None

    def _item(self, item_id: str) -> ItemRecord:
        rec = self.catalog.get(item_id)
        if rec is None:
            rec = self.catalog[item_id] = ItemRecord(item_id, "unknown")
        return rec

    def observe(self, e: Event) -> None:
        """Apply one event to the user state and the item counters."""
        rec = self._item(e.item_id)
        state = self.users.get(e.user_id)
        if state is None:
            state = self.users[e.user_id] = new_user_state(e.user_id)
        # Like the events agent: an item the catalog does not know gives the event no category (no affinity);
        # its placeholder record's "unknown" is only for the item-side features of a training row.
        view = EventView.from_event(e, rec.category if e.item_id in self._known else None)
        if apply_events(state, [view], self.cfg):
            self.catalog[e.item_id] = rec.with_counts(rec.counts + count_events([view])[e.item_id])
            self._user_cache = None
            if e.type != "impression" and e.item_id in self._items:
                self.recent.setdefault(e.user_id, deque(maxlen=200)).append(self._items.index(e.item_id))

    def row(self, e: Event) -> list[float]:
        """Training row for impression ``e`` from the state before it (``x_tt_dot`` left 0 for the caller)."""
        now = e.ts.timestamp()
        state = self.users.get(e.user_id) or new_user_state(e.user_id)
        cached = self._user_cache
        if cached is None or cached[0] != e.user_id or cached[1] != now:
            cached = self._user_cache = (e.user_id, now, user_features(state, now, self.cfg))
        rec = self._item(e.item_id)
        ui = user_item_features(state, e.item_id, rec.category, now, self.cfg)
        return [*serving_row(cached[2], ui, rec, now, 0.0), math.log1p(e.position or 0)]


@dataclass(frozen=True)
class RankerData:
    """Aligned with ``SimLog.impressions``: features, labels, time and each row's recent-item sequence."""

    x: FloatArray
    clicked: FloatArray
    purchased: FloatArray
    ts: IntArray
    user: IntArray
    item: IntArray
    recent: IntArray  # [N, seq_len] left-padded with -1


def build_ranker_data(log: SimLog, cfg: FeatureConfig | None = None, seq_len: int = 50) -> RankerData:
    """One feature row per impression, computed from the events strictly before it in the log order."""
    feats = PointInTimeFeatures(log, cfg or FeatureConfig())
    rows: list[list[float]] = []
    recent = np.full((len(log.impressions), seq_len), -1, dtype=np.int64)
    for e in log.events:
        if e.type == "impression" and e.item_id in log.dataset.items:
            rows.append(feats.row(e))
            tail = list(feats.recent.get(e.user_id, ()))[-seq_len:]
            if tail:
                recent[len(rows) - 1, seq_len - len(tail) :] = tail
        feats.observe(e)
    imp = log.impressions
    x = np.asarray(rows, dtype=np.float32).reshape(len(rows), len(RANKER_FEATURES))
    return RankerData(x, imp.clicked, imp.purchased, imp.ts, imp.user, imp.item, recent)
