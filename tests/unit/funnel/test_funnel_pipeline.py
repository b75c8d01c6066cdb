"""The composed funnel: a full answer, its explanations and logs, and every degradation path."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import numpy as np
import pytest
from funnel_world import CFG, T0, World, all_sources, build_world

from agents.funnel.candidates import REASONS, RetrievalContext, Scored
from agents.funnel.config import FunnelConfig
from agents.funnel.filters import FilterConfig
from agents.funnel.hydrate import HydrationPlan, hydrate
from agents.funnel.ordering import OrderingConfig
from agents.funnel.pipeline import Funnel
from agents.funnel.scoring import FakeRanker
from state.errors import StoreUnavailable
from state.items import ItemRecord
from streams.codec import encode
from streams.records import RecommendRequest


def _req(k: int = 10, user: str = "u1", cid: str = "c1", **context: Any) -> RecommendRequest:
    return RecommendRequest(correlation_id=cid, user_id=user, k=k, context=context, exclude=["i30"])


def _funnel(w: World, *, lam: float = 0.8, eps: float = 0.0, **kw: Any) -> Funnel:
    cfg = FunnelConfig(
        ordering=OrderingConfig(mmr_lambda=lam, min_lambda=0.0, epsilon=eps, max_epsilon=0.5),
        filters=FilterConfig(seen_last_n=3),
    )
    kw.setdefault("ranker", FakeRanker())
    return Funnel(cfg, w.store, all_sources(w), vectors=w.vectors, features=CFG, **kw)


def _banned(w: World) -> set[str]:
    unavailable = {i for i, r in w.items.items() if not r.available}
    return unavailable | {"i30", "i13", "i05", "i09"}  # excluded, purchased, seen in the last 3


async def test_full_answer_is_filtered_valued_and_explained() -> None:
    w = await build_world()
    res = await _funnel(w, lam=1.0).run(_req(), w.state, now=T0)
    ids = [r.item_id for r in res.items]
    assert len(ids) == 10 and not set(ids) & _banned(w) and not res.fallback
    assert [r.position for r in res.items] == list(range(10))
    for r in res.items:
        assert r.p_click is not None and r.p_purchase is not None and r.value is not None
        assert r.value == pytest.approx(r.p_purchase * w.items[r.item_id].price, rel=1e-5)  # expected revenue
        assert r.score == r.value and r.reason == REASONS[r.source]
    assert [r.value for r in res.items] == sorted((r.value or 0.0 for r in res.items), reverse=True)  # lambda 1
    assert res.propensities == [1.0] * 10
    assert set(res.stage_ms) == {
        "context",
        "retrieve",
        "merge",
        "items",
        "filter",
        "hydrate",
        "score",
        "order",
        "respond",
    }
    assert res.source_counts["ann"] == 30 and res.source_counts["covisit"] == 3 and res.source_errors == {}
    assert res.dropped["exclude"] == 1 and res.dropped["seen"] >= 1 and res.dropped["unavailable"] >= 1
    assert res.missing == {"user_state": 0, "item_record": 0, "tt_dot": 0, "non_finite": 0}


async def test_logged_feature_rows_are_the_rows_scored() -> None:
    w = await build_world()
    res = await _funnel(w).run(_req(k=5), w.state, now=T0)
    ids = [r.item_id for r in res.items]
    vec = await w.store.read_user_vector("u1")
    assert vec is not None
    dots = (w.vectors.lookup(ids)[0] @ vec).astype(np.float32)
    want = hydrate(HydrationPlan.serving(), "u1", w.state, ids, [w.items[i] for i in ids], now=T0, cfg=CFG, tt_dot=dots)
    np.testing.assert_allclose(res.features, want.matrix, rtol=1e-6)
    p_click, _ = FakeRanker().score(res.features)
    assert [r.p_click for r in res.items] == pytest.approx(p_click.tolist())


async def test_new_user_gets_non_personal_pools() -> None:
    w = await build_world()
    res = await _funnel(w).run(_req(user="stranger"), None, now=T0)
    assert len(res.items) == 10 and res.source_counts.get("ann", 0) == 0 and res.source_counts["covisit"] == 0
    assert {r.source for r in res.items} <= {"trending", "fresh", "popular", "category"}
    assert res.missing["user_state"] == res.n_candidates - sum(res.dropped.values())
    assert not res.fallback


async def test_request_category_and_price_constraints_hold() -> None:
    w = await build_world()
    res = await _funnel(w).run(_req(category="hats", max_price=100.0), w.state, now=T0)
    assert res.items and all(
        w.items[r.item_id].category == "hats" and w.items[r.item_id].price <= 100.0 for r in res.items
    )
    assert res.dropped["category"] > 0 and res.dropped["price"] > 0


async def test_without_a_ranker_the_answer_is_retrieval_order_and_flagged() -> None:
    w = await build_world()
    funnel = _funnel(w, lam=1.0)
    funnel.set_model(None)
    res = await funnel.run(_req(), w.state, now=T0)
    assert res.fallback and res.degraded == ("no_ranker",) and len(res.items) == 10
    assert all(r.p_click is None and r.value is None for r in res.items)
    assert [r.score for r in res.items] == sorted((r.score for r in res.items), reverse=True)
    assert "hydrate" not in res.stage_ms and res.features.shape[0] == 0 and res.feature_columns == ()


class _Broken:
    name = "covisit"

    async def fetch(self, ctx: RetrievalContext) -> Scored:
        raise StoreUnavailable("redis: connection refused")


class _DownStore:
    """Every read fails, as when Redis is stopped."""

    def __getattr__(self, name: str) -> Any:
        async def fail(*args: Any, **kwargs: Any) -> Any:
            raise StoreUnavailable(f"{name}: connection refused")

        return fail


async def test_a_failing_source_is_skipped_and_counted() -> None:
    w = await build_world()
    sources: Sequence[Any] = [s for s in all_sources(w) if s.name != "covisit"] + [_Broken()]
    funnel = Funnel(FunnelConfig(), w.store, sources, ranker=FakeRanker(), vectors=w.vectors)
    res = await funnel.run(_req(), w.state, now=T0)
    assert len(res.items) == 10 and res.source_errors == {"covisit": 1}
    assert res.fallback and res.degraded == ("source:covisit",)


async def test_store_down_serves_the_cached_list_with_local_catalog_features() -> None:
    w = await build_world()
    catalog: dict[str, ItemRecord] = dict(w.items)
    down = dataclasses.replace(w, store=_DownStore())
    funnel = Funnel(
        FunnelConfig(), down.store, all_sources(down), ranker=FakeRanker(), vectors=w.vectors, catalog=catalog
    )
    popular = [(f"i{j:02d}", float(100 - j)) for j in range(30)]
    res = await funnel.run(_req(k=5), w.state, now=T0, fallback_items=popular)
    assert len(res.items) == 5 and {r.source for r in res.items} == {"fallback"}
    assert {r.reason for r in res.items} == {"popular"} and not {r.item_id for r in res.items} & _banned(w)
    assert {"items_store", "user_vector", "source:covisit", "source:popular"} <= set(res.degraded)
    assert res.missing["item_record"] == 0  # the local catalog answered
    assert res.items[0].p_click is not None


async def test_deadline_nearly_spent_skips_mmr_and_exploration() -> None:
    w = await build_world()
    clock = iter(np.arange(0.0, 100.0, 0.001))  # every timer read advances 1 ms
    funnel = _funnel(w, lam=0.3, eps=0.5, timer=lambda: float(next(clock)))
    res = await funnel.run(_req(), w.state, now=T0, budget_ms=5.0)
    assert res.skipped == ("mmr", "explore") and "deadline" in res.degraded and res.fallback
    assert res.propensities == [1.0] * 10 and not any(res.explored)
    assert [r.value for r in res.items] == sorted((r.value or 0.0 for r in res.items), reverse=True)
    relaxed = await _funnel(w, lam=0.3, eps=0.0).run(_req(), w.state, now=T0, budget_ms=10_000.0)
    assert relaxed.skipped == () and not relaxed.fallback


async def test_exploration_is_seeded_logged_and_explained() -> None:
    w = await build_world()
    funnel = _funnel(w, eps=0.1)
    runs = [await funnel.run(_req(k=10, cid=f"c{i}", epsilon=0.4), w.state, now=T0) for i in range(30)]
    again = await funnel.run(_req(k=10, cid="c3", epsilon=0.4), w.state, now=T0)
    assert [r.item_id for r in again.items] == [r.item_id for r in runs[3].items]
    explored = [(r, p) for res in runs for r, p, x in zip(res.items, res.propensities, res.explored, strict=True) if x]
    assert explored and all(r.reason == "explore" and 0 < p < 0.4 for r, p in explored)
    assert all(
        p == pytest.approx(0.6) for res in runs for p, x in zip(res.propensities, res.explored, strict=True) if not x
    )
    assert all(res.knobs.epsilon == 0.4 for res in runs)
    imp = runs[0].impression("c0", "u1", variant="B", model_version="v0001", served_at=datetime.fromtimestamp(T0, UTC))
    assert len(imp.items) == len(imp.propensities) == len(imp.features) == 10
    assert imp.feature_columns == list(HydrationPlan.serving().columns) and b'"propensities"' in encode(imp)


async def test_concurrent_runs_do_not_share_state() -> None:
    w = await build_world()
    funnel = _funnel(w, eps=0.2)
    reqs = [(_req(cid=f"c{i}"), w.state if i % 2 else None) for i in range(6)]
    alone = [await funnel.run(r, s, now=T0) for r, s in reqs]
    together = await asyncio.gather(*(funnel.run(r, s, now=T0) for r, s in reqs))
    for a, b in zip(alone, together, strict=True):
        assert a.items == b.items and a.missing == b.missing and a.propensities == b.propensities


async def test_catalog_first_asks_the_store_only_for_what_the_catalog_lacks() -> None:
    w = await build_world()
    asked: list[list[str]] = []
    real = w.store.read_items

    async def spy(ids: Sequence[str]) -> list[ItemRecord | None]:
        asked.append(list(ids))
        return await real(ids)

    w.store.read_items = spy  # type: ignore[method-assign]
    catalog = {i: r for i, r in w.items.items() if i != "i02"}
    cfg = FunnelConfig(catalog_first=True)
    res = await Funnel(cfg, w.store, all_sources(w), ranker=FakeRanker(), vectors=w.vectors, catalog=catalog).run(
        _req(), w.state, now=T0
    )
    assert asked == [["i02"]] and len(res.items) == 10 and res.missing["item_record"] == 0


class _Traced:
    """Wraps a source: logs when its fetch starts and when its first step ends (it suspends or returns)."""

    def __init__(self, inner: Any, log: list[str]) -> None:
        self.inner, self.log = inner, log
        self.uses_vector = getattr(inner, "uses_vector", False)

    @property
    def name(self) -> str:
        return str(self.inner.name)

    async def fetch(self, ctx: RetrievalContext) -> Scored:
        self.log.append(f"start:{self.name}")
        await asyncio.sleep(0)  # a store read: the request is sent, the reply awaited
        out: Scored = await self.inner.fetch(ctx)
        self.log.append(f"done:{self.name}")
        return out


async def test_store_reads_are_sent_before_the_ann_search_and_results_keep_the_sources_order() -> None:
    w = await build_world()
    log: list[str] = []
    sources = [_Traced(s, log) for s in all_sources(w)]  # ANN first
    funnel = Funnel(FunnelConfig(), w.store, sources, ranker=FakeRanker(), vectors=w.vectors)
    res = await funnel.run(_req(), w.state, now=T0)
    starts = [e for e in log if e.startswith("start:")]
    assert starts[-1] == "start:ann" and len(starts) == len(sources)  # every store read is on the wire first
    assert list(res.source_counts)[:2] == ["ann", "covisit"] and res.source_counts["ann"] == 30
