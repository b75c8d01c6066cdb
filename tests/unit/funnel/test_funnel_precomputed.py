"""The precomputed tier: served (filtered) without a model or with the deadline nearly spent, before the pools."""

from __future__ import annotations

from typing import Any

from funnel_world import CFG, T0, World, all_sources, build_world

from agents.funnel.config import FunnelConfig
from agents.funnel.filters import FilterConfig
from agents.funnel.ordering import OrderingConfig
from agents.funnel.pipeline import Funnel
from agents.funnel.scoring import FakeRanker
from state.errors import StoreUnavailable
from state.precomputed import PrecomputedList
from streams.records import RecommendRequest

#: i13 was purchased, i05 is among the last 3 seen, i06/i20/i41 are unavailable (j % 7 == 6), i30 is excluded.
STORED = [
    "i13",
    "i40",
    "i05",
    "i06",
    "i41",
    "i30",
    "i42",
    "i43",
    "i20",
    "i44",
    "i45",
    "i46",
    "i47",
    "i49",
    "i50",
    "i51",
    "i52",
]
SERVABLE = ["i40", "i42", "i43", "i44", "i45", "i46", "i47", "i49", "i50", "i51"]


def _req(k: int = 10, **kw: Any) -> RecommendRequest:
    return RecommendRequest(correlation_id="c1", user_id="u1", k=k, exclude=["i30"], **kw)


def _funnel(w: World, *, ranker: bool, within_ms: float = 0.0) -> Funnel:
    cfg = FunnelConfig(
        ordering=OrderingConfig(mmr_lambda=1.0), filters=FilterConfig(seen_last_n=3), precomputed_within_ms=within_ms
    )
    return Funnel(
        cfg,
        w.store,
        all_sources(w),
        ranker=FakeRanker() if ranker else None,
        vectors=w.vectors if ranker else None,  # a retired model takes its item vectors with it
        features=CFG,
    )


async def _store_list(w: World, items: list[str]) -> None:
    scored = [(i, 100.0 - n) for n, i in enumerate(items)]
    await w.store.write_precomputed(
        [PrecomputedList.of("u1", scored, model_version="v0007", job_id="j1", created_at=T0)], 3600
    )


async def test_without_a_model_the_filtered_precomputed_list_is_served_in_stored_order() -> None:
    w = await build_world()
    await _store_list(w, STORED)
    res = await _funnel(w, ranker=False).run(_req(), w.state, now=T0)
    assert [i.item_id for i in res.items] == SERVABLE
    assert {i.source for i in res.items} == {"precomputed"} and {i.reason for i in res.items} == {"precomputed"}
    assert [i.position for i in res.items] == list(range(10))
    assert [i.score for i in res.items] == [100.0 - STORED.index(i) for i in SERVABLE]
    assert res.degraded == ("no_ranker", "precomputed") and res.fallback
    assert res.dropped == {"exclude": 1, "purchased": 1, "seen": 1, "unavailable": 3}
    assert res.source_counts == {"precomputed": len(STORED)} and "retrieve" not in res.stage_ms


async def test_a_short_list_comes_first_and_the_pools_fill_the_rest() -> None:
    w = await build_world()
    await _store_list(w, ["i13", "i44", "i42"])
    res = await _funnel(w, ranker=False).run(_req(k=8), w.state, now=T0)
    ids = [i.item_id for i in res.items]
    assert ids[:2] == ["i44", "i42"] and len(ids) == 8 and len(set(ids)) == 8
    assert [i.source for i in res.items[:2]] == ["precomputed"] * 2
    assert {i.source for i in res.items[2:]} <= {"ann", "trending", "fresh", "popular", "category", "covisit"}
    assert not set(ids) & {"i13", "i30", "i05", "i09", "i06", "i20"}
    assert [i.position for i in res.items] == list(range(8)) and len(res.propensities) == 8
    assert "no_ranker" in res.degraded and res.degraded[-1] == "precomputed"
    assert res.features.shape[0] == 0 and res.feature_columns == ()


async def test_with_a_model_and_time_to_spare_the_list_is_ignored() -> None:
    w = await build_world()
    await _store_list(w, STORED)
    res = await _funnel(w, ranker=True, within_ms=5.0).run(_req(), w.state, now=T0, budget_ms=250.0)
    assert "precomputed" not in {i.source for i in res.items} and not res.fallback
    assert all(i.p_click is not None for i in res.items)


async def test_a_nearly_spent_deadline_serves_the_list_even_with_a_model() -> None:
    w = await build_world()
    await _store_list(w, STORED)
    res = await _funnel(w, ranker=True, within_ms=5.0).run(_req(k=5), w.state, now=T0, budget_ms=4.0)
    assert [i.item_id for i in res.items] == SERVABLE[:5]
    assert res.degraded == ("deadline", "precomputed")
    off = await _funnel(w, ranker=True, within_ms=0.0).run(_req(k=5), w.state, now=T0, budget_ms=4.0)
    assert "precomputed" not in {i.source for i in off.items}


async def test_no_list_means_the_pools_as_before() -> None:
    w = await build_world()
    res = await _funnel(w, ranker=False).run(_req(), w.state, now=T0)
    assert len(res.items) == 10 and "precomputed" not in {i.source for i in res.items}
    assert res.degraded == ("no_ranker",)


async def test_an_unreadable_list_degrades_to_the_pools() -> None:
    w = await build_world()
    await _store_list(w, STORED)

    async def down(user_id: str) -> PrecomputedList | None:
        raise StoreUnavailable("redis: connection refused")

    w.store.read_precomputed = down  # type: ignore[method-assign]
    res = await _funnel(w, ranker=False).run(_req(), w.state, now=T0)
    assert len(res.items) == 10 and "precomputed" not in {i.source for i in res.items}
    assert res.degraded == ("source:precomputed", "no_ranker")


async def test_a_retrieval_only_model_still_serves_its_own_ranking() -> None:
    w = await build_world()
    await _store_list(w, STORED)
    cfg = FunnelConfig(ordering=OrderingConfig(mmr_lambda=1.0), filters=FilterConfig(seen_last_n=3))
    funnel = Funnel(cfg, w.store, all_sources(w), ranker=None, vectors=w.vectors, features=CFG)
    res = await funnel.run(_req(), w.state, now=T0)
    assert len(res.items) == 10 and "precomputed" not in {i.source for i in res.items}
