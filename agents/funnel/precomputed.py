"""The precomputed tier: a user's batch-scored list, hard-filtered, served when the model cannot rank in time."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np

from agents.funnel.candidates import Candidate
from agents.funnel.filters import Constraints, FilterConfig, Filtered, apply_filters
from agents.funnel.ordering import Knobs
from agents.funnel.outcome import FunnelResult
from state.item_columns import ItemColumns
from state.items import ItemRecord
from state.precomputed import PrecomputedList
from state.user_state import UserState
from streams.records import RecItem

SOURCE = "precomputed"


@dataclass(frozen=True, slots=True)
class PrecomputedTier:
    """What the tier had for one request: the stored list after the hard filters."""

    source: PrecomputedList
    kept: Filtered

    @property
    def items(self) -> list[RecItem]:
        """The kept items in the stored (batch-ranked) order, explained as ``precomputed``."""
        return [
            RecItem(item_id=c.item_id, position=p, score=c.score, source=SOURCE, reason=SOURCE, value=c.score)
            for p, c in enumerate(self.kept.kept)
        ]


def filter_precomputed(
    plist: PrecomputedList,
    records: Sequence[ItemRecord | None] | ItemColumns,
    state: UserState | None,
    cons: Constraints,
    cfg: FilterConfig,
) -> PrecomputedTier:
    """The stored list through the serving filters (exclude, blocklist, purchased, seen, unavailable, ...).

    >>> from state.items import ItemRecord as R
    >>> pl = PrecomputedList("u", (("a", 3.0), ("b", 2.0), ("c", 1.0)), "v1", "j", 0.0)
    >>> tier = filter_precomputed(pl, [R("a", "x"), R("b", "x", available=False), R("c", "x")], None,
    ...                           Constraints(frozenset({"a"})), FilterConfig())
    >>> [(i.item_id, i.position, i.reason) for i in tier.items], tier.kept.dropped
    ([('c', 0, 'precomputed')], {'exclude': 1, 'unavailable': 1})
    """
    cands = [Candidate(item, (SOURCE,), (rank,), score) for rank, (item, score) in enumerate(plist.items)]
    return PrecomputedTier(plist, apply_filters(cands, records, state, cons, cfg))


def tier_result(
    tier: PrecomputedTier, knobs: Knobs, *, stage_ms: dict[str, float], degraded: Sequence[str]
) -> FunnelResult:
    """The answer made of the list alone (it had at least ``k`` items left): stored order, nothing explored."""
    items = tier.items[: knobs.k]
    return FunnelResult(
        items=items,
        propensities=[1.0] * len(items),
        explored=[False] * len(items),
        features=np.zeros((0, 0), np.float32),
        feature_columns=(),
        knobs=knobs,
        stage_ms=stage_ms,
        dropped=tier.kept.dropped,
        source_counts={SOURCE: len(tier.source.items)},
        degraded=(*degraded, SOURCE),
        n_candidates=len(tier.source.items),
    )


def top_up(tier: PrecomputedTier, rest: FunnelResult, k: int, why: str) -> FunnelResult:
    """The list's items first, then the regular answer's items it lacks, up to ``k`` (feature rows dropped).

    ``why`` (``no_ranker`` or ``deadline``) is recorded among the degradations, before ``precomputed``.

    The regular answer's rows no longer align with a list that mixes in unscored items, so the combined
    result logs no features; propensities and exploration flags of the regular items are kept.
    """
    head = tier.items[:k]
    have = {i.item_id for i in head}
    tail = [
        (i, p, x) for i, p, x in zip(rest.items, rest.propensities, rest.explored, strict=True) if i.item_id not in have
    ][: k - len(head)]
    items = head + [i.model_copy(update={"position": len(head) + n}) for n, (i, _, _) in enumerate(tail)]
    counts = {**rest.source_counts, SOURCE: len(tier.source.items)}
    dropped = dict(rest.dropped)
    for name, n in tier.kept.dropped.items():
        dropped[name] = dropped.get(name, 0) + n
    return replace(
        rest,
        items=items,
        propensities=[1.0] * len(head) + [p for _, p, _ in tail],
        explored=[False] * len(head) + [x for _, _, x in tail],
        features=np.zeros((0, 0), np.float32),
        feature_columns=(),
        source_counts=counts,
        dropped=dropped,
        degraded=(*(d for d in rest.degraded if d not in {"no_candidates", why}), why, SOURCE),
    )
