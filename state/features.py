"""User features as pure functions over ``UserState``: the same code serves the stream and offline training."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping

from state.decay import value_at
from state.feature_config import ENGAGED, TYPE_INDEX, EventView, FeatureConfig
from state.state_codec import decode_state, encode_state
from state.user_state import (
    NO_TIME,
    WINDOW_NAMES,
    WINDOWS,
    UserState,
    apply_events,
    interacted_items,
    new_user_state,
)
from streams.records import EVENT_TYPES, Event

__all__ = [
    "USER_FEATURE_NAMES",
    "USER_ITEM_FEATURE_NAMES",
    "EventView",
    "FeatureConfig",
    "UserState",
    "apply_events",
    "category_affinity",
    "decode_state",
    "encode_state",
    "event_views",
    "interacted_items",
    "is_idle",
    "negative_items",
    "new_user_state",
    "user_features",
    "user_item_features",
    "window_counts",
]

_COUNT_NAMES = tuple(f"n_{t}_{w}" for w in WINDOW_NAMES for t in EVENT_TYPES)
_OTHER_NAMES = (
    "ctr_7d",
    "secs_since_last",
    "last_gap_s",
    "mean_gap_s",
    "session_length",
    "session_duration_s",
    "n_negative_impressions",
    "n_categories",
    "top_category_share",
    "category_entropy",
    "avg_price",
    "n_purchased",
    "lifetime_events",
)
#: Keys of :func:`user_features`, in a stable order (use it to build model inputs).
USER_FEATURE_NAMES: tuple[str, ...] = _COUNT_NAMES + _OTHER_NAMES
#: Keys of :func:`user_item_features`.
USER_ITEM_FEATURE_NAMES: tuple[str, ...] = (
    "ui_category_affinity",
    "ui_category_share",
    "ui_seen",
    "ui_times_in_last_n",
    "ui_secs_since_interaction",
    "ui_negative_impression",
    "ui_purchased",
)
_CTR_PRIOR = (1.0, 19.0)  # Beta(1, 19): a 5 % click-through rate before any evidence


def window_counts(state: UserState, now: float) -> list[list[int]]:
    """Counts per window (1 h, 24 h, 7 d) per event type at ``now``.

    A window of ``n`` buckets counts the events whose bucket is one of the ``n`` buckets ending
    with the bucket of ``now`` (so "1 h" covers between 55 and 60 minutes).
    """
    now_ms = round(now * 1000)
    out: list[list[int]] = []
    for (width, n), rows in zip(WINDOWS, state.buckets, strict=True):
        top = now_ms // width
        acc = [0] * len(EVENT_TYPES)
        for b, row in rows.items():
            if top - n < b <= top:
                for i, c in enumerate(row):
                    acc[i] += c
        out.append(acc)
    return out


def category_affinity(state: UserState, now: float, cfg: FeatureConfig) -> dict[str, float]:
    """Decayed, weighted interaction mass per category at ``now`` (events-equivalent)."""
    if state.ref_ms == NO_TIME:
        return {}
    hl = cfg.affinity_half_life_s
    ref = state.ref_ms / 1000.0
    return {c: value_at(v, ref, now, hl) for c, v in state.affinity.items()}


def negative_items(state: UserState, now: float, cfg: FeatureConfig) -> list[str]:
    """Items shown at least ``negative_grace_s`` before ``now`` and not engaged with since (newest first)."""
    cutoff = round((now - cfg.negative_grace_s) * 1000)
    engaged: dict[str, int] = {}
    for ts, t, item in state.last_n:
        if t in ENGAGED:
            engaged[item] = max(ts, engaged.get(item, NO_TIME))
    out: list[str] = []
    for ts, item in reversed(state.impressions):
        if ts <= cutoff and engaged.get(item, NO_TIME) < ts and item not in out:
            out.append(item)
    return out


def is_idle(state: UserState, now: float, cfg: FeatureConfig) -> bool:
    """True when the user's newest event is older than ``idle_ttl_s`` (the state may be dropped)."""
    return state.newest_ms == NO_TIME or now - state.newest_ms / 1000.0 > cfg.idle_ttl_s


def user_features(state: UserState, now: float, cfg: FeatureConfig) -> dict[str, float]:
    """Named numeric features of ``state`` at ``now``; keys are exactly ``USER_FEATURE_NAMES``."""
    counts = window_counts(state, now)
    out: dict[str, float] = {}
    for w, row in zip(WINDOW_NAMES, counts, strict=True):
        for t, c in zip(EVENT_TYPES, row, strict=True):
            out[f"n_{t}_{w}"] = float(c)
    week = counts[-1]
    a, b = _CTR_PRIOR
    out["ctr_7d"] = (week[TYPE_INDEX["click"]] + a) / (week[TYPE_INDEX["impression"]] + a + b)
    out.update(_recency(state, now, cfg))
    out.update(_session_features(state))
    out["n_negative_impressions"] = float(len(negative_items(state, now, cfg)))
    out.update(_category_features(category_affinity(state, now, cfg)))
    out["avg_price"] = state.price_sum / state.price_cnt if state.price_cnt > 0 else 0.0
    out["n_purchased"] = float(len(state.purchased))
    out["lifetime_events"] = float(state.total)
    return out


def _recency(state: UserState, now: float, cfg: FeatureConfig) -> dict[str, float]:
    times = [ts for ts, _, _ in state.last_n]
    since = now - times[-1] / 1000.0 if times else cfg.idle_ttl_s
    last_gap = (times[-1] - times[-2]) / 1000.0 if len(times) > 1 else 0.0
    mean_gap = (times[-1] - times[0]) / 1000.0 / (len(times) - 1) if len(times) > 1 else 0.0
    return {"secs_since_last": min(since, cfg.idle_ttl_s), "last_gap_s": last_gap, "mean_gap_s": mean_gap}


def _session_features(state: UserState) -> dict[str, float]:
    duration = (state.session_last_ms - state.session_start_ms) / 1000.0 if state.session_len else 0.0
    return {"session_length": float(state.session_len), "session_duration_s": duration}


def _category_features(aff: Mapping[str, float]) -> dict[str, float]:
    total = sum(aff.values())
    if total <= 0:
        return {"n_categories": 0.0, "top_category_share": 0.0, "category_entropy": 0.0}
    shares = [v / total for v in aff.values() if v > 0]
    entropy = -sum(p * math.log(p) for p in shares)
    return {"n_categories": float(len(aff)), "top_category_share": max(shares), "category_entropy": entropy}


def user_item_features(
    state: UserState, item_id: str, category: str | None, now: float, cfg: FeatureConfig
) -> dict[str, float]:
    """Features of the (user, candidate item) pair at ``now``; keys are ``USER_ITEM_FEATURE_NAMES``."""
    aff = category_affinity(state, now, cfg)
    total = sum(aff.values())
    mine = aff.get(category, 0.0) if category is not None else 0.0
    times = [ts for ts, _, item in state.last_n if item == item_id]
    since = now - max(times) / 1000.0 if times else cfg.idle_ttl_s
    return {
        "ui_category_affinity": mine,
        "ui_category_share": mine / total if total > 0 else 0.0,
        "ui_seen": 1.0 if times else 0.0,
        "ui_times_in_last_n": float(len(times)),
        "ui_secs_since_interaction": min(since, cfg.idle_ttl_s),
        "ui_negative_impression": 1.0 if item_id in negative_items(state, now, cfg) else 0.0,
        "ui_purchased": 1.0 if item_id in state.purchased else 0.0,
    }


def event_views(
    events: Iterable[Event], category_of: Mapping[str, str] | Callable[[str], str | None]
) -> list[EventView]:
    """Flatten records for :func:`apply_events` (offline training uses this with the catalog)."""
    look = category_of.get if isinstance(category_of, Mapping) else category_of
    return [EventView.from_event(e, look(e.item_id)) for e in events]
