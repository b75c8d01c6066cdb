"""Candidate pools kept incrementally: trending and per-category popular (decayed top K), co-visitation, fresh.

All decay is forward decay (``state.decay``): stored scores never shrink, so an item's rank only
changes when it is incremented, and a top K can be kept exactly without ever re-sorting.
"""

from __future__ import annotations

import heapq
from bisect import insort
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from state.decay import aligned_ref, forward_weight, needs_rebase, rebase_factor, value_at
from state.feature_config import IMPRESSION, TYPE_INDEX, EventView, FeatureConfig
from state.items import ItemRecord
from state.store import CovisitUpdate, DecayedUpdate, DecaySpec, PoolUpdate
from state.user_state import to_ms

Scored = list[tuple[str, float]]


@dataclass(frozen=True, slots=True)
class PoolConfig:
    """Half-lives and sizes of the candidate pools."""

    trending_half_life_s: float = 1800.0
    category_half_life_s: float = 6 * 3600.0
    covisit_half_life_s: float = 24 * 3600.0
    covisit_window_s: float = 1800.0
    covisit_top_k: int = 50
    covisit_neighbours: int = 5  # recent items each new interaction pairs with
    fresh_keep: int = 200
    catalog_log_keep: int = 100_000

    @property
    def trending(self) -> DecaySpec:
        return DecaySpec("trending", self.trending_half_life_s)

    def category_popular(self, category: str) -> DecaySpec:
        return DecaySpec(f"popular.{category}", self.category_half_life_s)


class DecayedTopK:
    """Forward-decayed scores with an exact top ``k``, kept incrementally; memory bounded by ``capacity``.

    >>> t = DecayedTopK(k=2, half_life_s=60.0, capacity=10)
    >>> t.add("a", 1.0, 0.0); t.add("b", 4.0, 0.0); t.add("c", 2.0, 120.0)
    >>> t.top(120.0)
    [('c', 2.0), ('b', 1.0)]
    >>> t.value("a", 120.0)
    0.25
    """

    def __init__(self, k: int, half_life_s: float, capacity: int = 10_000) -> None:
        if k < 1 or capacity < 2 * k:
            raise ValueError(f"need k >= 1 and capacity >= 2k, got k={k}, capacity={capacity}")
        self.k, self.half_life_s, self.capacity = k, half_life_s, capacity
        self.ref: float | None = None
        self.scores: dict[str, float] = {}
        self._heap: list[tuple[float, str]] = []  # min-heap over the top k, with stale entries
        self._top: set[str] = set()

    def add(self, item: str, weight: float, ts: float) -> None:
        """Add ``weight`` events-equivalent at time ``ts`` (any order of calls gives the same scores)."""
        if self.ref is None:
            self.ref = aligned_ref(ts, self.half_life_s)
        elif needs_rebase(ts, self.ref, self.half_life_s):
            self._rebase(aligned_ref(ts, self.half_life_s))
        s = self.scores.get(item, 0.0) + weight * forward_weight(ts, self.ref, self.half_life_s)
        self.scores[item] = s
        self._promote(item, s)
        if len(self.scores) > self.capacity:
            self._prune()

    def _promote(self, item: str, s: float) -> None:
        if item in self._top:
            heapq.heappush(self._heap, (s, item))
        elif len(self._top) < self.k:
            self._top.add(item)
            heapq.heappush(self._heap, (s, item))
        elif s > self._min()[0]:
            _, out = heapq.heappop(self._heap)
            self._top.discard(out)
            self._top.add(item)
            heapq.heappush(self._heap, (s, item))
        if len(self._heap) > 4 * self.k:
            self._heap = [(self.scores[m], m) for m in self._top]
            heapq.heapify(self._heap)

    def _min(self) -> tuple[float, str]:
        while self._heap[0][1] not in self._top or self._heap[0][0] != self.scores[self._heap[0][1]]:
            heapq.heappop(self._heap)  # stale: the item moved up or left
        return self._heap[0]

    def _rebase(self, new_ref: float) -> None:
        assert self.ref is not None
        f = rebase_factor(self.ref, new_ref, self.half_life_s)
        self.scores = {m: s * f for m, s in self.scores.items()}
        self._heap = [(self.scores[m], m) for m in self._top]
        heapq.heapify(self._heap)
        self.ref = new_ref

    def _prune(self) -> None:
        # Forget the weakest half outside the top k (amortised O(1) per add).
        rest = [m for m in self.scores if m not in self._top]
        vals = np.fromiter((self.scores[m] for m in rest), dtype=np.float64, count=len(rest))
        drop = len(self.scores) - self.capacity // 2
        for j in np.argpartition(vals, drop - 1)[:drop].tolist():
            del self.scores[rest[j]]

    def value(self, item: str, now: float) -> float:
        s = self.scores.get(item)
        return 0.0 if s is None or self.ref is None else value_at(s, self.ref, now, self.half_life_s)

    def top(self, now: float, n: int | None = None) -> Scored:
        """Up to ``min(n, k)`` items, best first (ties by item id, descending, as Redis), valued at ``now``."""
        if self.ref is None:
            return []
        best = sorted(((self.scores[m], m) for m in self._top), reverse=True)[: n or self.k]
        return [(m, value_at(s, self.ref, now, self.half_life_s)) for s, m in best]


def decayed_updates(
    events: Sequence[EventView], ref: float, cfg: FeatureConfig, pools: PoolConfig
) -> list[DecayedUpdate]:
    """Trending and per-category popular increments of a batch (weights as popularity), relative to ``ref``."""
    trend: dict[str, float] = {}
    per_cat: dict[str, dict[str, float]] = {}
    for ev in events:
        w = cfg.popularity_weights[TYPE_INDEX[ev.type]]
        if not w:
            continue
        trend[ev.item_id] = trend.get(ev.item_id, 0.0) + w * forward_weight(ev.ts, ref, pools.trending_half_life_s)
        if ev.category is not None:
            cat = per_cat.setdefault(ev.category, {})
            cat[ev.item_id] = cat.get(ev.item_id, 0.0) + w * forward_weight(ev.ts, ref, pools.category_half_life_s)
    out = [DecayedUpdate(pools.trending, ref, trend)] if trend else []
    out += [DecayedUpdate(pools.category_popular(c), ref, inc) for c, inc in sorted(per_cat.items())]
    return out


def covisit_pairs(
    recent: Sequence[tuple[int, int, str]],
    applied: Sequence[EventView],
    pools: PoolConfig,
    *,
    counted: Callable[[EventView], bool] | None = None,
    last_n: int = 20,
) -> list[tuple[str, str, float]]:
    """Pairs ``(item, other, ts)`` of interactions within the session window of each other.

    ``recent`` is the user's ``last_n`` before the batch; ``applied`` the batch's applied events, in order
    (see ``apply_events(..., applied_out=...)``).  Each interaction pairs with up to ``covisit_neighbours``
    distinct items of the user's ``last_n`` as it stood when the event was applied (``last_n`` is the
    state's bound), so how events are cut into batches does not change the pairs.  Only events for which
    ``counted`` holds (default: all) produce pairs; the others (already written before a replay) still
    join the history.  Impressions pair with nothing.
    """
    window_ms = pools.covisit_window_s * 1000
    hist = list(recent)
    out: list[tuple[str, str, float]] = []
    for ev in applied:
        t = TYPE_INDEX[ev.type]
        if t == IMPRESSION:
            continue
        entry = (to_ms(ev.ts), t, ev.item_id)
        if counted is None or counted(ev):
            seen: set[str] = {ev.item_id}
            for ts, _, other in reversed(hist):
                if len(seen) > pools.covisit_neighbours:
                    break
                if other not in seen and abs(entry[0] - ts) <= window_ms:
                    seen.add(other)
                    out.append((ev.item_id, other, ev.ts))
        insort(hist, entry)  # the same order and bound as UserState.last_n
        if len(hist) > last_n:
            del hist[0]
    return out


def covisit_update(pairs: Iterable[tuple[str, str, float]], ref: float, pools: PoolConfig) -> CovisitUpdate | None:
    """Symmetric, decayed co-visitation increments for the store (None when there are none)."""
    acc: dict[str, dict[str, float]] = {}
    for a, b, ts in pairs:
        w = forward_weight(ts, ref, pools.covisit_half_life_s)
        for x, y in ((a, b), (b, a)):
            row = acc.setdefault(x, {})
            row[y] = row.get(y, 0.0) + w
    if not acc:
        return None
    return CovisitUpdate(pools.covisit_half_life_s, pools.covisit_top_k, ref, acc)


def fresh_updates(
    records: Iterable[ItemRecord], previous: Mapping[str, ItemRecord], pools: PoolConfig
) -> list[PoolUpdate]:
    """Keep ``fresh`` and ``fresh:{category}`` as the newest available items (scored by creation time)."""
    ups: dict[str, dict[str, float]] = {}
    rems: dict[str, list[str]] = {}
    for rec in records:
        old = previous.get(rec.item_id)
        if old is not None and old.category != rec.category:
            rems.setdefault(f"fresh:{old.category}", []).append(rec.item_id)
        for name in ("fresh", f"fresh:{rec.category}"):
            if rec.available:
                ups.setdefault(name, {})[rec.item_id] = rec.created_at
            else:
                rems.setdefault(name, []).append(rec.item_id)
    names = sorted(set(ups) | set(rems))
    return [PoolUpdate(n, ups.get(n, {}), rems.get(n, ()), pools.fresh_keep) for n in names]


#: Set-style pool of catalog upserts: item -> time the items agent wrote it (newest first on read).
CATALOG_LOG = "catalog"


def catalog_log_update(item_ids: Iterable[str], at: float, pools: PoolConfig) -> PoolUpdate:
    """Record that ``item_ids`` were upserted at ``at``, so every worker can index the new ones."""
    return PoolUpdate(CATALOG_LOG, dict.fromkeys(item_ids, at), keep=pools.catalog_log_keep)
