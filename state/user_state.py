"""Bounded per-user streaming state and the idempotent, order-tolerant ``apply_events`` that updates it."""

from __future__ import annotations

import hashlib
import heapq
from bisect import insort
from collections.abc import Sequence

from state.decay import aligned_ref, forward_weight, needs_rebase, rebase_factor
from state.feature_config import IMPRESSION, TYPE_INDEX, EventView, FeatureConfig
from streams.records import EVENT_TYPES

N_TYPES = len(EVENT_TYPES)
NO_TIME = -1
#: Bucketed counters: (bucket width in ms, buckets per window) for the 1 h, 24 h and 7 d windows.
WINDOWS: tuple[tuple[int, int], ...] = ((300_000, 12), (3_600_000, 24), (21_600_000, 28))
WINDOW_NAMES: tuple[str, ...] = ("1h", "24h", "7d")


def id_hash(event_id: str) -> int:
    """A stable 40-bit digest of an event id (the dedupe ring stores these, not the ids).

    >>> id_hash("e-1") == id_hash("e-1"), 0 <= id_hash("x") < 2**40
    (True, True)
    """
    return int.from_bytes(hashlib.blake2b(event_id.encode(), digest_size=5).digest(), "big")


def to_ms(ts: float) -> int:
    """Epoch seconds to integer milliseconds (state keeps exact integer times).

    >>> to_ms(1.25)
    1250
    """
    return round(ts * 1000.0)


class UserState:
    """Everything kept for one user; every collection is bounded by ``FeatureConfig``.

    Times are integer epoch milliseconds.  Mutated in place by :func:`apply_events`;
    serialised by ``state.state_codec``.
    """

    __slots__ = (
        "affinity",
        "buckets",
        "floor",
        "impressions",
        "last_n",
        "newest_ms",
        "price_cnt",
        "price_sum",
        "purchased",
        "ref_ms",
        "ring",
        "ring_ids",
        "session_id",
        "session_last_ms",
        "session_len",
        "session_start_ms",
        "total",
        "user_id",
    )

    def __init__(self, user_id: str) -> None:
        self.user_id = user_id
        self.newest_ms = NO_TIME  # newest accepted event time (any type), the lateness reference
        self.total = 0  # events applied over the user's life
        self.floor: tuple[int, int] = (NO_TIME, -1)  # newest (ts, id hash) forgotten by the ring
        self.ring: list[tuple[int, int]] = []  # min-heap of remembered (ts, id hash)
        self.ring_ids: set[int] = set()
        self.last_n: list[tuple[int, int, str]] = []  # (ts, type, item) interactions, oldest first
        self.impressions: list[tuple[int, str]] = []  # (ts, item), oldest first
        self.purchased: dict[str, int] = {}  # item -> newest purchase time
        self.buckets: tuple[dict[int, list[int]], ...] = tuple({} for _ in WINDOWS)
        self.ref_ms = NO_TIME  # forward-decay reference of affinity and price sums
        self.affinity: dict[str, float] = {}
        self.price_sum = 0.0
        self.price_cnt = 0.0
        self.session_id: str | None = None
        self.session_start_ms = NO_TIME
        self.session_last_ms = NO_TIME
        self.session_len = 0

    def __repr__(self) -> str:
        return f"UserState({self.user_id!r}, total={self.total}, newest_ms={self.newest_ms})"


def new_user_state(user_id: str) -> UserState:
    """An empty state for ``user_id``."""
    return UserState(user_id)


def interacted_items(state: UserState) -> frozenset[str]:
    """Items the user recently viewed, clicked, carted or bought (what the baseline must not re-recommend)."""
    return frozenset(item for _, _, item in state.last_n) | frozenset(state.purchased)


def apply_events(
    state: UserState, events: Sequence[EventView], cfg: FeatureConfig, applied_out: list[EventView] | None = None
) -> int:
    """Apply ``events`` in order; skip duplicates and late events (see ``FeatureConfig``); return how many applied.

    ``applied_out``, when given, receives the applied events (what downstream increments must count).
    """
    applied = 0
    for ev in events:
        ts = to_ms(ev.ts)
        h = id_hash(ev.event_id)
        if not _admit(state, ts, h, cfg):
            continue
        t = TYPE_INDEX[ev.type]
        _count(state, ts, t)
        if t == IMPRESSION:
            _bounded_insert(state.impressions, (ts, ev.item_id), cfg.max_impressions)
        else:
            _interaction(state, ev, ts, t, cfg)
        state.total += 1
        applied += 1
        if applied_out is not None:
            applied_out.append(ev)
    if applied:
        _prune_buckets(state)
    return applied


def _admit(state: UserState, ts: int, h: int, cfg: FeatureConfig) -> bool:
    """Dedupe and lateness check; remembers the event when it is admitted."""
    if h in state.ring_ids or (ts, h) <= state.floor:
        return False
    lateness = int(cfg.lateness_s * 1000)
    if state.newest_ms != NO_TIME and ts < state.newest_ms - lateness:
        return False
    state.newest_ms = max(state.newest_ms, ts)
    heapq.heappush(state.ring, (ts, h))
    state.ring_ids.add(h)
    oldest_kept = state.newest_ms - lateness
    while state.ring and (len(state.ring) > cfg.dedupe_ring or state.ring[0][0] < oldest_kept):
        gone = heapq.heappop(state.ring)
        state.ring_ids.discard(gone[1])
        state.floor = max(state.floor, gone)
    return True


def _count(state: UserState, ts: int, t: int) -> None:
    for (width, _), buckets in zip(WINDOWS, state.buckets, strict=True):
        b = ts // width
        row = buckets.get(b)
        if row is None:
            row = buckets[b] = [0] * N_TYPES
        row[t] += 1


def _prune_buckets(state: UserState) -> None:
    # Buckets that no window ending at or after the newest event can reach are dropped.
    for (width, n), buckets in zip(WINDOWS, state.buckets, strict=True):
        oldest = state.newest_ms // width - n
        for b in [b for b in buckets if b <= oldest]:
            del buckets[b]


def _bounded_insert(seq: list[tuple[int, str]], entry: tuple[int, str], cap: int) -> None:
    if not seq or entry >= seq[-1]:
        seq.append(entry)
    else:
        insort(seq, entry)
    if len(seq) > cap:
        del seq[0]


def _interaction(state: UserState, ev: EventView, ts: int, t: int, cfg: FeatureConfig) -> None:
    entry = (ts, t, ev.item_id)
    if not state.last_n or entry >= state.last_n[-1]:
        state.last_n.append(entry)
    else:
        insort(state.last_n, entry)
    if len(state.last_n) > cfg.last_n:
        del state.last_n[0]
    if ev.type == "purchase":
        _remember_purchase(state, ev.item_id, ts, cfg.max_purchased)
    _decayed(state, ev, ts, t, cfg)
    _session(state, ev.session_id, ts, cfg)


def _remember_purchase(state: UserState, item: str, ts: int, cap: int) -> None:
    state.purchased[item] = max(ts, state.purchased.get(item, NO_TIME))
    if len(state.purchased) > cap:
        oldest = min(state.purchased.items(), key=lambda kv: (kv[1], kv[0]))[0]
        del state.purchased[oldest]


def _decayed(state: UserState, ev: EventView, ts: int, t: int, cfg: FeatureConfig) -> None:
    hl = cfg.affinity_half_life_s * 1000.0
    if state.ref_ms == NO_TIME:
        state.ref_ms = int(aligned_ref(ts, hl))
    elif needs_rebase(ts, state.ref_ms, hl):
        new_ref = int(aligned_ref(ts, hl))
        f = rebase_factor(state.ref_ms, new_ref, hl)
        state.affinity = {c: v * f for c, v in state.affinity.items()}
        state.price_sum *= f
        state.price_cnt *= f
        state.ref_ms = new_ref
    w = forward_weight(ts, state.ref_ms, hl)
    if ev.category is not None and cfg.affinity_weights[t] > 0:
        aff = state.affinity
        aff[ev.category] = aff.get(ev.category, 0.0) + cfg.affinity_weights[t] * w
        if len(aff) > cfg.max_categories:
            del aff[min(aff, key=lambda c: (aff[c], c))]
    if ev.price is not None:
        state.price_sum += ev.price * w
        state.price_cnt += w


def _session(state: UserState, session_id: str | None, ts: int, cfg: FeatureConfig) -> None:
    """Track the newest session: an explicit id, or (without one) activity separated by less than the gap."""
    if state.session_len == 0:
        _start_session(state, session_id, ts)
        return
    if session_id is not None:
        same = session_id == state.session_id
    else:
        same = state.session_id is None and abs(ts - state.session_last_ms) <= cfg.session_gap_s * 1000
    if same:
        state.session_len += 1
        state.session_start_ms = min(state.session_start_ms, ts)
        state.session_last_ms = max(state.session_last_ms, ts)
    elif ts > state.session_last_ms:
        _start_session(state, session_id, ts)
    # An older event of another session is counted everywhere but in the current-session features.


def _start_session(state: UserState, session_id: str | None, ts: int) -> None:
    state.session_id = session_id
    state.session_start_ms = ts
    state.session_last_ms = ts
    state.session_len = 1
