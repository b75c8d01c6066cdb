"""Retrieval contracts: the context a source sees, the ``CandidateSource`` protocol and the de-duplicating merge."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from functools import partial
from operator import itemgetter
from typing import Any, NamedTuple, Protocol, overload

import numpy as np
import numpy.typing as npt

from state.space_ids import SpaceIds, take_ids
from state.user_state import UserState

Scored = Sequence[tuple[str, float]]
I64 = npt.NDArray[np.int64]
F64 = npt.NDArray[np.float64]
Hits = tuple[Sequence[str], I64, I64]  # the source names, then each hit's source (an index into them) and rank

#: Reciprocal-rank-fusion offset: damps the weight of the very first ranks (the usual value from the RRF paper).
RRF_K = 60

#: Reason code shown with an item, by the source that contributed it (unknown sources explain as ``recommended``).
REASONS: dict[str, str] = {
    "ann": "similar_to_recent",
    "covisit": "often_viewed_together",
    "trending": "trending",
    "fresh": "new_arrival",
    "popular": "popular",
    "category": "popular_in_category",
    "fallback": "popular",
    "precomputed": "precomputed",
}
EXPLORE_REASON = "explore"


def reason_for(source: str) -> str:
    """The reason code of an item contributed by ``source``.

    >>> reason_for("ann"), reason_for("mystery")
    ('similar_to_recent', 'recommended')
    """
    return REASONS.get(source, "recommended")


@dataclass(frozen=True, slots=True)
class RetrievalContext:
    """What a source may use: the user's state (None for a new user), the session embedding and the request."""

    user_id: str
    state: UserState | None
    now: float
    user_vector: npt.NDArray[np.float32] | None = None
    categories: tuple[str, ...] = ()  # requested category first, then the user's strongest ones
    exclude: frozenset[str] = field(default_factory=frozenset)

    @property
    def is_new_user(self) -> bool:
        return self.state is None or not self.state.last_n


class Ranked(Sequence[tuple[str, float]]):
    """A source's ``(item_id, score)`` list that also knows where each item sits in ``space``, the id list of the
    index it searched (``space[positions[j]] == self[j][0]``, or -1 for an item not in it): later stages find
    the item's rows by position. Slices keep the positions. A :meth:`lazy` list builds its pairs only when
    they are read: a merge by position never reads them.

    >>> hits = Ranked([("b", 0.9), ("a", 0.5)], np.array([1, 0]), ["a", "b"])
    >>> hits == [("b", 0.9), ("a", 0.5)], hits.positions.tolist(), hits[:1].positions.tolist()
    (True, [1, 0], [1])
    >>> Ranked.lazy(np.array([1]), np.array([0.5]), ["a", "b"]) == [("b", 0.5)]
    True
    """

    __slots__ = ("_pairs", "_scores", "positions", "space")

    def __init__(self, pairs: Iterable[tuple[str, float]], positions: I64, space: Sequence[str]) -> None:
        self._pairs: list[tuple[str, float]] | None = list(pairs)
        self._scores: npt.NDArray[np.floating[Any]] | None = None
        self.positions, self.space = positions, space

    @classmethod
    def lazy(cls, positions: I64, scores: npt.NDArray[np.floating[Any]], space: Sequence[str]) -> Ranked:
        """Hits at valid ``positions`` of ``space`` with their ``scores``, the pairs built when first read."""
        out = cls((), positions, space)
        out._pairs, out._scores = None, scores
        return out

    def pairs(self) -> list[tuple[str, float]]:
        """The ``(item_id, score)`` pairs (built once for a lazy list)."""
        if self._pairs is None:
            scores = self._scores.tolist() if self._scores is not None else []
            self._pairs = list(zip(map(self.space.__getitem__, self.positions.tolist()), scores, strict=True))
        return self._pairs

    def __len__(self) -> int:
        return len(self.positions) if self._pairs is None else len(self._pairs)

    @overload
    def __getitem__(self, j: int) -> tuple[str, float]: ...

    @overload
    def __getitem__(self, j: slice) -> Ranked: ...

    def __getitem__(self, j: int | slice) -> tuple[str, float] | Ranked:
        if not isinstance(j, slice):
            return self.pairs()[j]
        if self._pairs is None and self._scores is not None:
            return Ranked.lazy(self.positions[j], self._scores[j], self.space)
        return Ranked(self.pairs()[j], self.positions[j], self.space)

    def __iter__(self) -> Iterator[tuple[str, float]]:
        return iter(self.pairs())

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Sequence) and len(other) == len(self) and list(self) == list(other)

    __hash__ = None  # type: ignore[assignment]  # compares by content, like a list

    def __repr__(self) -> str:
        return repr(self.pairs())


class IdSpace(Protocol):
    """An index's growing id list and the position of ids in it (``state.live_index.LiveIndex``)."""

    @property
    def item_ids(self) -> Sequence[str]: ...

    def positions(self, item_ids: Sequence[str]) -> I64:
        """Position of each id in :attr:`item_ids`, -1 where it is not there."""
        ...


def located(pairs: Sequence[tuple[str, float]], space: IdSpace) -> Ranked:
    """``pairs`` as a :class:`Ranked` list of ``space`` (for a list many requests share: found once)."""
    return Ranked(pairs, space.positions(list(map(_first, pairs))), space.item_ids)


class CandidateSource(Protocol):
    """One retrieval channel (ANN, co-visitation, a pool)."""

    @property
    def name(self) -> str:
        """A short, stable name: the key of quotas, source counts and reason codes."""
        ...

    async def fetch(self, ctx: RetrievalContext) -> Scored:
        """Candidate ``(item_id, score)`` pairs, best first, without duplicates.

        May return an empty list (e.g. nothing personal for a new user); store failures propagate as
        ``StoreError`` so the funnel can skip and count the source. Must not mutate ``ctx``.
        """
        ...


class Candidate(NamedTuple):
    """A merged candidate: every source that proposed it with its 0-based rank there, and the fused score.

    ``sources`` is ordered best rank first (ties by source priority), so ``sources[0]`` is the primary source.
    A named tuple rather than a dataclass: a request builds a thousand of these, and tuples build fastest.
    """

    item_id: str
    sources: tuple[str, ...]
    source_ranks: tuple[int, ...]
    score: float

    @property
    def source(self) -> str:
        return self.sources[0]


class CandidateList(Sequence[Candidate]):
    """Merged candidates as columns; reading one builds its :class:`Candidate`, so the thousand a request
    merges cost no objects until the few it serves are read. Compares equal to the list of its candidates.

    Every source's hit of candidate ``j`` is at ``at[j] : at[j] + many[j]`` of the hit columns, best first:
    its source is ``names[hit_source[h]]`` and its rank ``hit_rank[h]``. :meth:`of` builds the columns
    from candidates.

    >>> b = Candidate("b", ("popular", "ann"), (0, 1), 0.25)
    >>> cands = CandidateList.of([Candidate("a", ("ann",), (0,), 0.5), b])
    >>> cands[1] == b, cands.take([1]).ids, cands.primary, cands == [cands[0], b], cands[1:] == [b]
    (True, ['b'], ['ann', 'popular'], True, True)
    """

    __slots__ = ("at", "hit_rank", "hit_source", "ids", "many", "names", "scores")

    def __init__(self, ids: Sequence[str], scores: F64, hits: Hits, at: I64, many: I64) -> None:
        self.ids, self.scores, self.at, self.many = ids, scores, at, many
        self.names, self.hit_source, self.hit_rank = hits

    @classmethod
    def of(cls, cands: Sequence[Candidate]) -> CandidateList:
        """The columns of ``cands``."""
        many = np.fromiter((len(c.sources) for c in cands), np.int64, len(cands))
        names = list(dict.fromkeys(s for c in cands for s in c.sources))
        code = {name: n for n, name in enumerate(names)}
        sources = np.array([code[s] for c in cands for s in c.sources], np.int64)
        ranks = np.array([r for c in cands for r in c.source_ranks], np.int64)
        scores = np.array([c.score for c in cands], np.float64)
        return cls([c.item_id for c in cands], scores, (names, sources, ranks), np.cumsum(many) - many, many)

    def __len__(self) -> int:
        return len(self.ids)

    @overload
    def __getitem__(self, j: int) -> Candidate: ...

    @overload
    def __getitem__(self, j: slice) -> CandidateList: ...

    def __getitem__(self, j: int | slice) -> Candidate | CandidateList:
        if isinstance(j, slice):
            return self.take(range(len(self))[j])
        lo = int(self.at[j])
        hi = lo + int(self.many[j])
        sources = tuple(map(self.names.__getitem__, self.hit_source[lo:hi].tolist()))
        return _make((self.ids[j], sources, tuple(self.hit_rank[lo:hi].tolist()), float(self.scores[j])))

    def __iter__(self) -> Iterator[Candidate]:
        return (self[j] for j in range(len(self)))

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Sequence) and list(self) == list(other)

    __hash__ = None  # type: ignore[assignment]  # mutable columns, like a list

    @property
    def primary(self) -> list[str]:
        """Each candidate's primary source (its best-ranked hit)."""
        return list(map(self.names.__getitem__, self.hit_source[self.at].tolist()))

    def take(self, rows: Sequence[int] | I64) -> CandidateList:
        """The candidates at ``rows``, in that order."""
        idx = np.asarray(rows, np.int64)
        hits = (self.names, self.hit_source, self.hit_rank)
        return CandidateList(take_ids(self.ids, idx), self.scores[idx], hits, self.at[idx], self.many[idx])


_make = partial(tuple.__new__, Candidate)


@dataclass(frozen=True, slots=True)
class Merged:
    """The merge's candidates and, for each, its position in ``space`` (-1: no source gave one)."""

    candidates: CandidateList
    positions: I64
    space: Sequence[str] | None

    @property
    def ids(self) -> Sequence[str]:
        return self.candidates.ids


def merge_sources(
    lists: Mapping[str, Sequence[tuple[str, float]]], quotas: Mapping[str, int], limit: int
) -> list[Candidate]:
    """De-duplicate ranked source lists into at most ``limit`` candidates, best fused score first.

    Each source contributes its first ``quotas[name]`` items (all of them when it has no quota). The fused
    score is reciprocal rank fusion, ``sum(1 / (RRF_K + rank + 1))``, so an item several sources agree on
    rises; ties keep the order of first appearance (best rank, then the order of ``lists``). A source
    repeating an item keeps its first rank only.

    >>> out = merge_sources({"ann": [("a", .9), ("b", .8)], "popular": [("b", 50.), ("c", 40.)]}, {"popular": 1}, 10)
    >>> [(c.item_id, c.sources, c.source_ranks) for c in out]
    [('b', ('popular', 'ann'), (0, 1)), ('a', ('ann',), (0,))]
    """
    return list(merge_ranked(lists, quotas, limit).candidates)


def merge_ranked(lists: Mapping[str, Sequence[tuple[str, float]]], quotas: Mapping[str, int], limit: int) -> Merged:
    """:func:`merge_sources`, keeping the positions :class:`Ranked` lists carry (those of the first one's space).

    Vectorised: ranks are fused with numpy and the kept candidates stay columns (:class:`CandidateList`).
    When every list is a :class:`Ranked` list of one space with every item in it, items are told apart by
    position and the candidates' ids stay positions (:class:`SpaceIds`): no id string is read. Otherwise ids
    become integer codes through C-level ``map`` calls.

    >>> hits = Ranked([("a", .9), ("b", .8)], np.array([4, 7]), ["?"] * 8)
    >>> out = merge_ranked({"ann": hits, "popular": [("c", 50.), ("a", 40.)]}, {}, 10)
    >>> [c.item_id for c in out.candidates], out.positions.tolist()
    (['a', 'c', 'b'], [4, -1, 7])
    >>> space = ["a", "b", "c"]
    >>> def hits(*pos): return Ranked.lazy(np.array(pos), np.ones(len(pos)), space)
    >>> both = {"ann": hits(0, 1), "popular": hits(2, 0)}
    >>> out = merge_ranked(both, {}, 10)
    >>> [(c.item_id, c.sources) for c in out.candidates], out.positions.tolist()
    ([('a', ('ann', 'popular')), ('c', ('popular',)), ('b', ('ann',))], [0, 2, 1])
    """
    names = list(lists)
    tops = [lists[n][: quotas.get(n, len(lists[n]))] for n in names]
    space = next((r.space for r in lists.values() if isinstance(r, Ranked)), None)
    lens = np.array([len(t) for t in tops], dtype=np.int64)
    if not lens.sum():
        return Merged(CandidateList.of([]), np.zeros(0, np.int64), space)
    pos = _all_positions(tops, space)
    if pos is not None and space is not None:
        items, code = np.unique(pos, return_inverse=True)
        fused = _Fused.of(code, lens, len(items), limit)
        kept_pos = items[fused.kept]
        return Merged(fused.candidates(names, SpaceIds(space, kept_pos)), kept_pos, space)
    hit_ids = [item_id for top in tops for item_id in map(_first, top)]
    uniq = list(dict.fromkeys(hit_ids))
    codes = dict(zip(uniq, range(len(uniq)), strict=True))
    fused = _Fused.of(np.fromiter(map(codes.__getitem__, hit_ids), np.int64, len(hit_ids)), lens, len(uniq), limit)
    cands = fused.candidates(names, list(map(uniq.__getitem__, fused.kept.tolist())))
    if space is None:
        return Merged(cands, np.full(len(cands), -1, np.int64), None)
    hit_pos = np.concatenate([_positions(t, space) for t in tops])[fused.order]
    return Merged(cands, np.maximum.reduceat(hit_pos, fused.start)[fused.kept], space)


@dataclass(frozen=True, slots=True)
class _Fused:
    """Reciprocal-rank fusion of hits given as item codes, list by list: each item's hits best first."""

    order: I64  # hit order: by item, then best rank, then source priority (one hit per item and source)
    prio: I64
    rank: I64
    fused: F64
    start: I64  # each item's first hit in ``order``
    n_hits: I64
    kept: I64  # the kept items' codes, best fused score first

    @classmethod
    def of(cls, code: I64, lens: I64, n_items: int, limit: int) -> _Fused:
        """Fuse hits whose item codes are ``code`` (every code below ``n_items`` present), list after list.

        Orders are found by sorting one integer key, not by a lexicographic sort of several.
        """
        n_lists = len(lens)
        prio = np.repeat(np.arange(n_lists, dtype=np.int64), lens)
        rank = np.arange(len(code), dtype=np.int64) - np.repeat(np.cumsum(lens) - lens, lens)
        key = code * n_lists + prio
        by_source = np.argsort(key, kind="stable")  # a list's own order is its rank order
        pair = key[by_source]
        first = by_source[np.concatenate(([True], pair[1:] != pair[:-1]))]  # one hit per (item, source)
        span = int(rank.max()) + 1
        order = first[np.argsort((code[first] * span + rank[first]) * n_lists + prio[first])]  # best hit first
        code, prio, rank = code[order], prio[order], rank[order]
        start = np.flatnonzero(np.concatenate(([True], code[1:] != code[:-1])))
        # bincount sums each item's hits in order, as the reference merge does
        fused = np.asarray(np.bincount(code, weights=1.0 / (RRF_K + 1 + rank), minlength=n_items), np.float64)
        kept = np.lexsort((rank[start] * n_lists + prio[start], -fused))[:limit]
        n_hits = np.diff(np.append(start, len(code)))
        return cls(order, prio, rank, fused, start, n_hits, kept)

    def candidates(self, names: Sequence[str], ids: Sequence[str]) -> CandidateList:
        """The kept items as columns, ``ids`` their ids; every hit's source (an index into ``names``) and rank."""
        kept = self.kept
        return CandidateList(ids, self.fused[kept], (names, self.prio, self.rank), self.start[kept], self.n_hits[kept])


def _all_positions(tops: Sequence[Sequence[tuple[str, float]]], space: Sequence[str] | None) -> I64 | None:
    """Every hit's position when each list is a :class:`Ranked` list of ``space`` holding only items of it."""
    if space is None or not all(isinstance(t, Ranked) and t.space is space for t in tops if len(t)):
        return None
    pos = np.concatenate([np.asarray(t.positions, np.int64) for t in tops if isinstance(t, Ranked)])
    return pos if pos.size and int(pos.min()) >= 0 else None


def _positions(ranked: Sequence[tuple[str, float]], space: Sequence[str]) -> I64:
    """The positions a :class:`Ranked` list of ``space`` carries; -1 for any other list."""
    if isinstance(ranked, Ranked) and ranked.space is space:
        return np.asarray(ranked.positions, np.int64)
    return np.full(len(ranked), -1, np.int64)


_first = itemgetter(0)
