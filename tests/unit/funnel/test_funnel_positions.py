"""Positions in the ANN index's id list: sources that carry them, and a funnel finding rows by them, answer
exactly as without them (positions only save lookups among the catalog's and the vectors' ids)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest
from funnel_world import POOLS, T0, World, build_world
from hypothesis import given, settings
from hypothesis import strategies as st

from agents.funnel.candidates import CandidateSource, Ranked, RetrievalContext, merge_ranked
from agents.funnel.config import FunnelConfig
from agents.funnel.ordering import OrderingConfig
from agents.funnel.pipeline import Funnel
from agents.funnel.rows import CandidateRows
from agents.funnel.scoring import FakeRanker
from agents.funnel.sources import AnnSource, CachedPool, CovisitSource, PoolKind, PoolSource, interleave
from state.ann import ExactIndex
from state.catalog_table import CatalogTable
from state.live_index import LiveIndex
from state.space_ids import SpaceIds
from streams.records import RecommendRequest

KINDS: tuple[PoolKind, ...] = ("category", "trending", "fresh", "popular")
INDEXED = 45  # i00..i44 are in the index; the pools also propose i45..i59, which are not


def _live(w: World, indexed: int = INDEXED) -> LiveIndex:
    index = ExactIndex(w.vectors.dim)
    index.add(np.arange(indexed, dtype=np.int64), w.vectors.vectors[:indexed])
    return LiveIndex(index, w.vectors.ids[:indexed])


def _ctx(w: World) -> RetrievalContext:
    return RetrievalContext("u1", w.state, T0, w.vectors.vectors[5] + w.vectors.vectors[9], ("bags", "hats"))


def _sources(w: World, live: LiveIndex, *, located: bool) -> list[CandidateSource]:
    space = live if located else None
    return [
        AnnSource(live.index, live.item_ids, k=20),
        CovisitSource(w.store, POOLS, space=space),
        *(CachedPool(PoolSource(w.store, kind, POOLS, n=20), ttl_s=60.0, space=space) for kind in KINDS),
    ]


async def test_located_sources_answer_the_same_pairs_with_their_positions() -> None:
    w = await build_world()
    live = _live(w)
    ctx = _ctx(w)
    for plain, located in zip(_sources(w, live, located=False), _sources(w, live, located=True), strict=True):
        want, got = await plain.fetch(ctx), await located.fetch(ctx)
        assert got == want and isinstance(got, Ranked) and got.space is live.item_ids, located.name
        expect = [live.item_ids.index(i) if i in live else -1 for i, _ in got]
        assert got.positions.tolist() == expect, located.name
    lists = {s.name: await s.fetch(ctx) for s in _sources(w, live, located=True)}
    merged = merge_ranked(lists, {}, 100)
    assert [live.item_ids.index(i) if i in live else -1 for i in merged.ids] == merged.positions.tolist()
    assert (merged.positions == -1).any() and (merged.positions >= 0).any()


def _funnel(w: World, live: LiveIndex, *, located: bool) -> Funnel:
    cfg = FunnelConfig(ordering=OrderingConfig(mmr_lambda=0.7, epsilon=0.2, max_epsilon=0.5), catalog_first=True)
    catalog: Any = CatalogTable() if located else dict(w.items)
    if located:
        for item_id, rec in w.items.items():
            if item_id != "i02":  # one item the catalog lacks: the store is asked for it
                catalog[item_id] = rec
    kw: dict[str, Any] = {"index_ids": live.item_ids} if located else {}
    return Funnel(
        cfg, w.store, _sources(w, live, located=located), ranker=FakeRanker(), vectors=w.vectors, catalog=catalog, **kw
    )


@pytest.mark.parametrize(("learn", "everything_indexed"), [(False, False), (True, False), (False, True)])
async def test_a_funnel_finding_rows_by_position_serves_what_it_serves_without(
    learn: bool, everything_indexed: bool
) -> None:
    w = await build_world()
    live = _live(w, len(w.vectors.ids) if everything_indexed else INDEXED)
    plain, located = _funnel(w, live, located=False), _funnel(w, live, located=True)
    if learn:  # the catalog agent tells where each item sits, as it stores them
        ids = list(w.items)
        assert isinstance(located.catalog, CatalogTable)
        located.rows.learn_catalog_rows(live.item_ids, live.positions(ids), located.catalog.rows(ids))
    for cid in ("c1", "c2", "c3"):  # the first request fills the memos, the later ones read them
        req = RecommendRequest(correlation_id=cid, user_id="u1", k=12, exclude=["i30"])
        want = await plain.run(req, w.state, now=T0)
        got = await located.run(req, w.state, now=T0)
        assert [(r.item_id, r.source, r.value, r.p_click) for r in got.items] == [
            (r.item_id, r.source, r.value, r.p_click) for r in want.items
        ]
        assert np.array_equal(got.features, want.features) and got.propensities == want.propensities
        assert got.missing == want.missing and got.dropped == want.dropped and got.dropped
        assert got.kept is not None and isinstance(got.kept.records.ids, SpaceIds) == everything_indexed


class CountingCatalog(CatalogTable):
    """A catalog that records the ids it is asked to find row by row."""

    def __init__(self) -> None:
        super().__init__()
        self.asked: list[str] = []

    def rows(self, item_ids: Sequence[str]) -> npt.NDArray[np.int64]:
        self.asked += item_ids
        return super().rows(item_ids)


async def test_rows_learnt_for_another_id_list_neither_apply_nor_unlearn_the_funnels() -> None:
    w = await build_world()
    live = _live(w)
    catalog = CountingCatalog()
    for item_id, rec in w.items.items():
        catalog[item_id] = rec
    rows = CandidateRows(catalog, live.item_ids)
    ids = list(live.item_ids)
    truth = CatalogTable.rows(catalog, ids)
    rows.learn_catalog_rows(live.item_ids, live.positions(ids), truth)
    other = list(live.item_ids)  # equal, but not the list the ANN source searches
    rows.learn_catalog_rows(other, np.arange(len(other)), np.zeros(len(other), np.int64))  # wrong rows
    catalog.asked.clear()
    assert rows.catalog_rows(ids, live.positions(ids), live.item_ids).tolist() == truth.tolist()
    assert catalog.asked == []  # every position still answered from what was learnt for the funnel's list


@settings(max_examples=200, deadline=None)
@given(
    st.lists(st.lists(st.integers(0, 25), unique=True, max_size=15), min_size=1, max_size=4),
    st.integers(1, 40),
    st.booleans(),
)
def test_interleaving_located_lists_equals_interleaving_their_pairs(
    raw: list[list[int]], n: int, all_placed: bool
) -> None:
    space = [f"i{j}" for j in range(26 if all_placed else 20)]  # without all_placed, i20..i25 are not in it
    where = {item: p for p, item in enumerate(space)}
    plain = [[(f"i{j}", float(-r)) for r, j in enumerate(ids)] for ids in raw]
    ranked = [Ranked(p, np.array([where.get(i, -1) for i, _ in p], np.int64), space) for p in plain]
    got = interleave(ranked, n)
    assert got == interleave(plain, n) and isinstance(got, Ranked) and got.space is space
    assert got.positions.tolist() == [where.get(i, -1) for i, _ in got]
