"""Retrieval contracts: the context a source sees, the ``CandidateSource`` protocol and the de-duplicating merge."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import NamedTuple, Protocol

import numpy as np
import numpy.typing as npt

from state.user_state import UserState

Scored = list[tuple[str, float]]

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


def merge_sources(
    lists: Mapping[str, Sequence[tuple[str, float]]], quotas: Mapping[str, int], limit: int
) -> list[Candidate]:
    """De-duplicate ranked source lists into at most ``limit`` candidates, best fused score first.

    Each source contributes its first ``quotas[name]`` items (all of them when it has no quota). The fused
    score is reciprocal rank fusion, ``sum(1 / (RRF_K + rank + 1))``, so an item several sources agree on
    rises; ties keep the order of first appearance (best rank, then the order of ``lists``). A source
    repeating an item keeps its first rank only.

    Vectorised over the hits (a thousand candidates cost a handful of numpy calls, not Python loops over
    dictionaries); only the Candidate tuples of the kept items are built in Python.

    >>> out = merge_sources({"ann": [("a", .9), ("b", .8)], "popular": [("b", 50.), ("c", 40.)]}, {"popular": 1}, 10)
    >>> [(c.item_id, c.sources, c.source_ranks) for c in out]
    [('b', ('popular', 'ann'), (0, 1)), ('a', ('ann',), (0,))]
    """
    names = list(lists)
    codes: dict[str, int] = {}
    hit_code: list[int] = []
    hit_prio: list[int] = []
    hit_rank: list[int] = []
    for p, name in enumerate(names):
        ranked = lists[name]
        top = ranked[: quotas.get(name, len(ranked))]
        hit_code += [codes.setdefault(item_id, len(codes)) for item_id, _ in top]
        hit_prio += [p] * len(top)
        hit_rank += range(len(top))
    if not codes:
        return []
    code, prio, rank = (np.asarray(x, dtype=np.int64) for x in (hit_code, hit_prio, hit_rank))
    _, first = np.unique(code * len(names) + prio, return_index=True)  # one hit per (item, source): its first
    order = first[np.lexsort((prio[first], rank[first], code[first]))]  # per item, its hits best first
    code, prio, rank = code[order], prio[order], rank[order]
    fused = np.bincount(code, weights=1.0 / (RRF_K + 1 + rank), minlength=len(codes))
    start = np.searchsorted(code, np.arange(len(codes)))
    n_hits = np.bincount(code, minlength=len(codes))
    kept = np.lexsort((prio[start], rank[start], -fused))[:limit]
    items = list(codes)
    src, rnk = [names[p] for p in prio.tolist()], rank.tolist()
    out = []
    for c, lo, n, score in zip(kept.tolist(), start[kept].tolist(), n_hits[kept].tolist(), fused[kept].tolist(),
                               strict=True):
        out.append(Candidate(items[c], tuple(src[lo : lo + n]), tuple(rnk[lo : lo + n]), score))
    return out
