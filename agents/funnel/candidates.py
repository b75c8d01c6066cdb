"""Retrieval contracts: the context a source sees, the ``CandidateSource`` protocol and the de-duplicating merge."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from functools import partial
from operator import itemgetter
from typing import NamedTuple, Protocol, overload

import numpy as np
import numpy.typing as npt

from state.user_state import UserState

Scored = list[tuple[str, float]]
I64 = npt.NDArray[np.int64]

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


class Ranked(list[tuple[str, float]]):
    """A source's ``(item_id, score)`` list that also knows where each item sits in ``space``, the id list of the
    index it searched (``space[positions[j]] == self[j][0]``, or -1 for an item not in it): later stages find
    the item's rows by position.

    >>> hits = Ranked([("b", 0.9), ("a", 0.5)], np.array([1, 0]), ["a", "b"])
    >>> hits == [("b", 0.9), ("a", 0.5)], hits.positions.tolist()
    (True, [1, 0])
    """

    __slots__ = ("positions", "space")

    def __init__(self, pairs: Iterable[tuple[str, float]], positions: I64, space: Sequence[str]) -> None:
        super().__init__(pairs)
        self.positions, self.space = positions, space


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

    Every source's hit of candidate ``j`` is ``hit_sources[at[j] : at[j] + many[j]]`` (and the same slice of
    ``hit_ranks``), best first; :meth:`of` builds the columns from candidates.

    >>> b = Candidate("b", ("popular", "ann"), (0, 1), 0.25)
    >>> cands = CandidateList.of([Candidate("a", ("ann",), (0,), 0.5), b])
    >>> cands[1] == b, cands.take([1]).ids, cands.primary, cands == [cands[0], b], cands[1:] == [b]
    (True, ['b'], ['ann', 'popular'], True, True)
    """

    __slots__ = ("at", "hit_ranks", "hit_sources", "ids", "many", "scores")

    def __init__(
        self, ids: list[str], scores: list[float], hits: tuple[list[str], list[int]], at: I64, many: I64
    ) -> None:
        self.ids, self.scores, self.at, self.many = ids, scores, at, many
        self.hit_sources, self.hit_ranks = hits

    @classmethod
    def of(cls, cands: Sequence[Candidate]) -> CandidateList:
        """The columns of ``cands``."""
        many = np.fromiter((len(c.sources) for c in cands), np.int64, len(cands))
        hits = ([s for c in cands for s in c.sources], [r for c in cands for r in c.source_ranks])
        return cls([c.item_id for c in cands], [c.score for c in cands], hits, np.cumsum(many) - many, many)

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
        return _make((self.ids[j], tuple(self.hit_sources[lo:hi]), tuple(self.hit_ranks[lo:hi]), self.scores[j]))

    def __iter__(self) -> Iterator[Candidate]:
        return (self[j] for j in range(len(self)))

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Sequence) and list(self) == list(other)

    __hash__ = None  # type: ignore[assignment]  # mutable columns, like a list

    @property
    def primary(self) -> list[str]:
        """Each candidate's primary source (its best-ranked hit)."""
        return list(map(self.hit_sources.__getitem__, self.at.tolist()))

    def take(self, rows: Sequence[int]) -> CandidateList:
        """The candidates at ``rows``, in that order."""
        idx = np.asarray(rows, np.int64)
        pick = idx.tolist()
        hits = (self.hit_sources, self.hit_ranks)
        scores = list(map(self.scores.__getitem__, pick))
        return CandidateList(list(map(self.ids.__getitem__, pick)), scores, hits, self.at[idx], self.many[idx])


_make = partial(tuple.__new__, Candidate)


@dataclass(frozen=True, slots=True)
class Merged:
    """The merge's candidates and, for each, its position in ``space`` (-1: no source gave one)."""

    candidates: CandidateList
    positions: I64
    space: Sequence[str] | None

    @property
    def ids(self) -> list[str]:
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

    Vectorised: ids become integer codes through C-level ``map`` calls, ranks are fused with numpy, and the
    kept candidates stay columns (:class:`CandidateList`).

    >>> hits = Ranked([("a", .9), ("b", .8)], np.array([4, 7]), ["?"] * 8)
    >>> out = merge_ranked({"ann": hits, "popular": [("c", 50.), ("a", 40.)]}, {}, 10)
    >>> [c.item_id for c in out.candidates], out.positions.tolist()
    (['a', 'c', 'b'], [4, -1, 7])
    """
    names = list(lists)
    tops = [lists[n][: quotas.get(n, len(lists[n]))] for n in names]
    hit_ids = [item_id for top in tops for item_id in map(_first, top)]
    space = next((r.space for r in lists.values() if isinstance(r, Ranked)), None)
    if not hit_ids:
        return Merged(CandidateList.of([]), np.zeros(0, np.int64), space)
    items = list(dict.fromkeys(hit_ids))
    codes = dict(zip(items, range(len(items)), strict=True))
    code = np.fromiter(map(codes.__getitem__, hit_ids), np.int64, len(hit_ids))
    lens = np.array([len(t) for t in tops], dtype=np.int64)
    prio = np.repeat(np.arange(len(names), dtype=np.int64), lens)
    rank = np.arange(len(hit_ids), dtype=np.int64) - np.repeat(np.cumsum(lens) - lens, lens)
    _, first = np.unique(code * len(names) + prio, return_index=True)  # one hit per (item, source): its first
    order = first[np.lexsort((prio[first], rank[first], code[first]))]  # per item, its hits best first
    code, prio, rank = code[order], prio[order], rank[order]
    fused = np.bincount(code, weights=1.0 / (RRF_K + 1 + rank), minlength=len(items))
    start = np.searchsorted(code, np.arange(len(items)))
    n_hits = np.bincount(code, minlength=len(items))
    kept = np.lexsort((prio[start], rank[start], -fused))[:limit]
    hits = ([names[p] for p in prio.tolist()], rank.tolist())  # every hit, each candidate's consecutive from ``at``
    ids = list(map(items.__getitem__, kept.tolist()))
    cands = CandidateList(ids, fused[kept].tolist(), hits, start[kept], n_hits[kept])
    if space is None:
        return Merged(cands, np.full(len(cands), -1, np.int64), None)
    hit_pos = np.concatenate([_positions(lists[n], len(t), space) for n, t in zip(names, tops, strict=True)])[order]
    return Merged(cands, np.maximum.reduceat(hit_pos, start)[kept], space)


def _positions(ranked: Sequence[tuple[str, float]], n: int, space: Sequence[str]) -> I64:
    """The first ``n`` positions a :class:`Ranked` list of ``space`` carries; -1 for any other list."""
    if isinstance(ranked, Ranked) and ranked.space is space:
        return np.asarray(ranked.positions[:n], np.int64)
    return np.full(n, -1, np.int64)


_first = itemgetter(0)
