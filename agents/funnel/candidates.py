"""Retrieval contracts: the context a source sees, the ``CandidateSource`` protocol and the de-duplicating merge."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol

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


@dataclass(frozen=True, slots=True)
class Candidate:
    """A merged candidate: every source that proposed it with its 0-based rank there, and the fused score.

    ``sources`` is ordered best rank first (ties by source priority), so ``sources[0]`` is the primary source.
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
    priority = {name: i for i, name in enumerate(lists)}
    hits: dict[str, list[tuple[int, int, str]]] = {}
    for name, ranked in lists.items():
        seen: set[str] = set()
        for rank, (item_id, _) in enumerate(ranked[: quotas.get(name, len(ranked))]):
            if item_id not in seen:  # a source repeating an item keeps its best rank only
                seen.add(item_id)
                hits.setdefault(item_id, []).append((rank, priority[name], name))
    cands = []
    for item_id, h in hits.items():
        h.sort()
        fused = sum(1.0 / (RRF_K + rank + 1) for rank, _, _ in h)
        cands.append((-fused, h[0][0], h[0][1], item_id, Candidate(item_id, tuple(n for _, _, n in h),
                                                                    tuple(r for r, _, _ in h), fused)))
    cands.sort(key=lambda t: t[:4])
    return [c for *_, c in cands[:limit]]
