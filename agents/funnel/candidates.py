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
    rises; ties keep the order of first appearance (rank, then the order of ``lists``), then the item id.

    >>> out = merge_sources({"ann": [("a", .9), ("b", .8)], "popular": [("b", 50.), ("c", 40.)]}, {"popular": 1}, 10)
    >>> [(c.item_id, c.sources, c.source_ranks) for c in out]
    [('b', ('popular', 'ann'), (0, 1)), ('a', ('ann',), (0,))]
    """
    first: dict[str, tuple[int, int, str]] = {}  # item -> (rank, priority, source) of its first hit
    more: dict[str, list[tuple[int, int, str]]] = {}  # items several sources proposed: every hit
    for prio, (name, ranked) in enumerate(lists.items()):
        for rank, (item_id, _) in enumerate(ranked[: quotas.get(name, len(ranked))]):
            hit = first.get(item_id)
            if hit is None:
                first[item_id] = (rank, prio, name)
            elif hit[2] != name:  # a source repeating an item keeps its best (first) rank only
                hits = more.setdefault(item_id, [hit])
                if hits[-1][2] != name:
                    hits.append((rank, prio, name))
    for item_id, hits in more.items():
        hits.sort()
        first[item_id] = hits[0]
    keyed = [(-_fused(item_id, hit, more), hit[0], hit[1], item_id) for item_id, hit in first.items()]
    keyed.sort()
    out = []
    for neg, rank, _, item_id in keyed[:limit]:
        several = more.get(item_id)
        if several is None:
            out.append(Candidate(item_id, (first[item_id][2],), (rank,), -neg))
        else:
            out.append(Candidate(item_id, tuple(n for _, _, n in several), tuple(r for r, _, _ in several), -neg))
    return out


def _fused(item_id: str, hit: tuple[int, int, str], more: Mapping[str, list[tuple[int, int, str]]]) -> float:
    hits = more.get(item_id)
    if hits is None:
        return 1.0 / (RRF_K + 1 + hit[0])
    return sum(1.0 / (RRF_K + 1 + r) for r, _, _ in hits)
