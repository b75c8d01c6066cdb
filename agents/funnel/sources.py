"""Candidate sources over the online store and the ANN index: session ANN, co-visitation and the pools."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Sequence
from itertools import chain
from operator import itemgetter
from typing import Literal

import numpy as np

from agents.funnel.candidates import IdSpace, Ranked, RetrievalContext, Scored, located
from state.ann import AnnIndex
from state.pools import PoolConfig
from state.store import OnlineFeatureStore

PoolKind = Literal["trending", "fresh", "popular", "category"]


class AnnSource:
    """Nearest items to the user's session embedding (``ctx.user_vector``); nothing for users without one."""

    uses_vector = True  # the funnel reads the session vector before calling this source, and only this one

    def __init__(self, index: AnnIndex, item_ids: Sequence[str], k: int = 300, name: str = "ann") -> None:
        # ``item_ids`` is kept by reference: a live index (state.live_index) appends new items to it.
        self.index, self.item_ids, self.k, self._name = index, item_ids, k, name

    @property
    def name(self) -> str:
        return self._name

    async def fetch(self, ctx: RetrievalContext) -> Scored:
        if ctx.user_vector is None or len(self.index) == 0:
            return []
        ids, scores = self.index.search(ctx.user_vector.reshape(1, -1), self.k)
        ok = (ids[0] >= 0) & (ids[0] < len(self.item_ids))
        # positions in ``item_ids``: the funnel finds rows by them, and reads the ids only of what it serves
        return Ranked.lazy(ids[0][ok], scores[0][ok], self.item_ids)


class CovisitSource:
    """Items co-visited with the user's most recent distinct items, weights summed over those seeds (a
    :class:`Ranked` list of ``space`` when given)."""

    def __init__(
        self,
        store: OnlineFeatureStore,
        pools: PoolConfig,
        seeds: int = 5,
        per_seed: int = 50,
        name: str = "covisit",
        *,
        space: IdSpace | None = None,
    ) -> None:
        self.store, self.pools, self.seeds, self.per_seed, self._name = store, pools, seeds, per_seed, name
        self.space = space  # the ANN index's ids: the items are found there once, not in each table

    @property
    def name(self) -> str:
        return self._name

    async def fetch(self, ctx: RetrievalContext) -> Scored:
        recent = recent_items(ctx, self.seeds)
        if not recent:
            return []
        rows = await self.store.read_covisit(recent, self.per_seed, ctx.now, self.pools.covisit_half_life_s)
        acc: dict[str, float] = {}
        for row in rows:
            for item, w in row:
                acc[item] = acc.get(item, 0.0) + w
        for seed in recent:  # the seeds themselves are not news
            acc.pop(seed, None)
        out = sorted(acc.items(), key=lambda t: (-t[1], t[0]))
        return located(out, self.space) if self.space is not None else out


def recent_items(ctx: RetrievalContext, n: int) -> list[str]:
    """The user's ``n`` most recent distinct interacted items, newest first."""
    if ctx.state is None:
        return []
    out: list[str] = []
    for _, _, item in reversed(ctx.state.last_n):
        if item not in out:
            out.append(item)
            if len(out) == n:
                break
    return out


class PoolSource:
    """A non-personal pool: ``trending``, ``fresh``, ``popular`` or ``category`` (popular in ``ctx.categories``).

    ``fresh`` narrows to the first context category when there is one; ``category`` interleaves the
    per-category pools of up to ``max_categories`` categories (best ranks first).
    """

    def __init__(
        self,
        store: OnlineFeatureStore,
        kind: PoolKind,
        pools: PoolConfig,
        *,
        n: int = 200,
        max_categories: int = 2,
        name: str | None = None,
    ) -> None:
        self.store, self.kind, self.pools, self.n, self.max_categories = store, kind, pools, n, max_categories
        self._name = name or kind

    @property
    def name(self) -> str:
        return self._name

    async def fetch(self, ctx: RetrievalContext) -> Scored:
        if self.kind == "trending":
            return await self.store.read_decayed(self.pools.trending, self.n, ctx.now)
        if self.kind == "popular":
            return await self.store.top_popular(self.n, ctx.now)
        if self.kind == "fresh":
            name = f"fresh:{ctx.categories[0]}" if ctx.categories else "fresh"
            return await self.store.read_pool(name, self.n)
        cats = ctx.categories[: self.max_categories]
        return interleave(await asyncio.gather(*(self.read_category(c, ctx.now) for c in cats)), self.n)

    async def read_category(self, category: str, now: float) -> Scored:
        """The ``n`` most popular items of one category at ``now``."""
        return await self.store.read_decayed(self.pools.category_popular(category), self.n, now)


class CachedPool:
    """A :class:`PoolSource` served from memory for ``ttl_s``: pools are the same for every user, so one
    read per pool (and category) a second replaces one per request. Scores are as fresh as ``ttl_s``.

    With ``space`` (the ANN index's id list), each cached list is a :class:`Ranked` list of it, its items'
    positions found once per read: the funnel then finds their catalog and vector rows by position.
    """

    def __init__(
        self,
        inner: PoolSource,
        ttl_s: float,
        timer: Callable[[], float] = time.monotonic,
        *,
        space: IdSpace | None = None,
    ) -> None:
        self.inner, self.ttl_s, self.timer, self.space = inner, ttl_s, timer, space
        self._cache: dict[tuple[str, ...], tuple[float, Scored]] = {}
        self._mixed: dict[tuple[str, ...], tuple[list[Scored], Scored]] = {}  # categories -> (lists, interleaved)

    @property
    def name(self) -> str:
        return self.inner.name

    async def fetch(self, ctx: RetrievalContext) -> Scored:
        if self.inner.kind != "category":
            key = ctx.categories[:1] if self.inner.kind == "fresh" else ()
            return await self._cached(key, lambda: self.inner.fetch(ctx))
        cats = ctx.categories[: self.inner.max_categories]
        lists = await asyncio.gather(
            *(self._cached((c,), lambda c=c: self.inner.read_category(c, ctx.now)) for c in cats)  # type: ignore[misc]
        )
        mixed = self._mixed.get(cats)
        if mixed is None or not _same_objects(mixed[0], lists):
            mixed = (lists, interleave(lists, self.inner.n))  # the same cached lists interleave the same way
            if len(self._mixed) > 4096:
                self._mixed.clear()
            self._mixed[cats] = mixed
        return mixed[1]

    async def _cached(self, key: tuple[str, ...], read: Callable[[], Awaitable[Scored]]) -> Scored:
        now = self.timer()
        hit = self._cache.get(key)
        if hit is not None and now - hit[0] < self.ttl_s:
            return hit[1]
        out = await read()
        if self.space is not None:
            out = located(out, self.space)
        if len(self._cache) > 4096:  # bounded: one entry per category, never unbounded
            self._cache.clear()
        self._cache[key] = (now, out)
        return out


def _same_objects(a: Sequence[object], b: Sequence[object]) -> bool:
    return len(a) == len(b) and all(x is y for x, y in zip(a, b, strict=True))


def interleave(lists: Sequence[Scored], n: int) -> Scored:
    """Round-robin by rank over ``lists``, first occurrence kept, at most ``n`` items; :class:`Ranked` lists of
    one space give a :class:`Ranked` list of it.

    >>> interleave([[("a", 3.0), ("b", 2.0)], [("c", 9.0), ("a", 8.0), ("d", 1.0)]], 10)
    [('a', 3.0), ('c', 9.0), ('b', 2.0), ('d', 1.0)]
    >>> import numpy as np
    >>> space = ["a", "b", "c"]
    >>> mixed = interleave([Ranked([("c", 1.0)], np.array([2]), space), Ranked([("q", 2.0)], np.array([-1]), space)], 5)
    >>> mixed, mixed.positions.tolist()
    ([('c', 1.0), ('q', 2.0)], [2, -1])
    >>> first = Ranked([("a", 3.0), ("b", 2.0)], np.array([0, 1]), space)
    >>> mixed = interleave([first, Ranked([("c", 9.0), ("a", 8.0)], np.array([2, 0]), space)], 10)
    >>> mixed, mixed.positions.tolist()
    ([('a', 3.0), ('c', 9.0), ('b', 2.0)], [0, 2, 1])
    """
    ranked = [r for r in lists if isinstance(r, Ranked)]
    if not ranked or len(ranked) != len(lists) or len({id(r.space) for r in ranked}) != 1:
        return _interleave(lists, n)
    pos = np.concatenate([np.asarray(r.positions, np.int64) for r in ranked])
    if (pos < 0).any():  # items outside the space: dedupe by id, then look their positions up
        out = _interleave(lists, n)
        where: dict[str, int] = {}
        for r in reversed(ranked):  # an id's position is the same in every list of the space
            where.update(zip(map(_first_of, r), r.positions.tolist(), strict=True))
        return Ranked(
            out, np.fromiter(map(where.__getitem__, map(_first_of, out)), np.int64, len(out)), ranked[0].space
        )
    # Every item has a position: the round robin (rank-major, then list order), first occurrence of each
    # position, in numpy; equal positions are equal ids.
    lens = np.array([len(r) for r in ranked], np.int64)
    which = np.repeat(np.arange(len(ranked)), lens)
    rank = np.arange(len(pos)) - np.repeat(np.cumsum(lens) - lens, lens)
    visit = np.lexsort((which, rank))
    _, first = np.unique(pos[visit], return_index=True)
    keep = visit[np.sort(first)][:n]
    pairs = list(chain.from_iterable(ranked))
    return Ranked(list(map(pairs.__getitem__, keep.tolist())), pos[keep], ranked[0].space)


_first_of = itemgetter(0)


def _interleave(lists: Sequence[Scored], n: int) -> Scored:
    out: list[tuple[str, float]] = []
    seen: set[str] = set()
    for rank in range(max((len(x) for x in lists), default=0)):
        for ranked in lists:
            if rank < len(ranked) and ranked[rank][0] not in seen:
                seen.add(ranked[rank][0])
                out.append(ranked[rank])
                if len(out) == n:
                    return out
    return out


class StaticSource:
    """A fixed list (e.g. the worker's cached popular list), the last resort when the store is down."""

    def __init__(self, items: Sequence[tuple[str, float]], name: str = "fallback") -> None:
        self.items, self._name = list(items), name

    @property
    def name(self) -> str:
        return self._name

    async def fetch(self, ctx: RetrievalContext) -> Scored:
        return [t for t in self.items if t[0] not in ctx.exclude]


def strongest_categories(affinity: dict[str, float], n: int) -> tuple[str, ...]:
    """The ``n`` categories with the most affinity (ties by name).

    >>> strongest_categories({"b": 2.0, "a": 2.0, "c": 5.0, "z": 0.0}, 2)
    ('c', 'a')
    """
    ranked = sorted(((v, c) for c, v in affinity.items() if v > 0), key=lambda t: (-t[0], t[1]))
    return tuple(c for _, c in ranked[:n])


__all__ = [
    "AnnSource",
    "CovisitSource",
    "PoolKind",
    "PoolSource",
    "StaticSource",
    "interleave",
    "recent_items",
    "strongest_categories",
]
