"""Candidate pools: exact incremental top K under decay, co-visitation, fresh and per-category pools."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from state.feature_config import EventView, FeatureConfig
from state.features import apply_events, new_user_state
from state.items import ItemRecord
from state.memory_store import MemoryFeatureStore
from state.pools import DecayedTopK, PoolConfig, covisit_pairs, covisit_update, decayed_updates, fresh_updates
from state.store import WriteBatch

T0 = 1_700_000_000.0
POOLS = PoolConfig()


@settings(max_examples=150, deadline=None)
@given(
    adds=st.lists(
        st.tuples(st.sampled_from("abcdefghijkl"), st.floats(0.1, 10), st.floats(0, 50_000)), min_size=1, max_size=80
    ),
    k=st.integers(1, 5),
)
def test_top_k_equals_a_full_recount(adds: list[tuple[str, float, float]], k: int) -> None:
    hl = 600.0  # 50 000 s is over 80 half-lives: the rebase runs too
    top = DecayedTopK(k=k, half_life_s=hl, capacity=100)
    for item, w, ts in adds:
        top.add(item, w, T0 + ts)
    now = T0 + max(ts for _, _, ts in adds)
    exact: dict[str, float] = {}
    for item, w, ts in adds:
        exact[item] = exact.get(item, 0.0) + w * 2.0 ** ((T0 + ts - now) / hl)
    got = top.top(now)
    want = sorted(exact.items(), key=lambda kv: (kv[1], kv[0]), reverse=True)[:k]
    assert [v for _, v in got] == pytest.approx([v for _, v in want], rel=1e-9)
    assert {m for m, v in got} == {m for m, v in want} or _tied(exact, want)


def _tied(exact: dict[str, float], want: list[tuple[str, float]]) -> bool:
    # Floating sums may order near-equal scores differently; accept only genuine near-ties.
    cut = want[-1][1]
    return sum(math.isclose(v, cut, rel_tol=1e-9) for v in exact.values()) > 1


def test_top_k_memory_stays_bounded() -> None:
    top = DecayedTopK(k=10, half_life_s=3600.0, capacity=200)
    for i in range(10_000):
        top.add(f"i{i % 5000}", 1.0 + (i % 7 == 0) * 50, T0 + i)
    assert len(top.scores) <= 200 and len(top.top(T0 + 10_000)) == 10
    with pytest.raises(ValueError):
        DecayedTopK(k=10, half_life_s=1.0, capacity=5)


def ev(i: int, typ: str, item: str, ts: float, cat: str | None = "c1") -> EventView:
    return EventView(f"e{i}", typ, "u", item, ts, "s", 1.0, cat)


def test_covisitation_pairs_recent_items_in_the_window() -> None:
    cfg = FeatureConfig()
    state = new_user_state("u")
    apply_events(state, [ev(1, "view", "old", T0 - 4000), ev(2, "view", "a", T0)], cfg)
    before = list(state.last_n)
    applied: list[EventView] = []
    batch = [
        ev(3, "impression", "x", T0 + 1),
        ev(4, "click", "b", T0 + 10),
        ev(5, "view", "b", T0 + 11),
        ev(4, "click", "b", T0 + 10),
    ]
    apply_events(state, batch, cfg, applied_out=applied)
    assert len(applied) == 3
    pairs = covisit_pairs(before, applied, POOLS)
    assert pairs == [("b", "a", T0 + 10), ("b", "a", T0 + 11)]
    upd = covisit_update(pairs, T0 + 11, POOLS)
    assert upd is not None and set(upd.pairs) == {"a", "b"}
    assert upd.pairs["a"]["b"] == pytest.approx(2 ** (-1 / POOLS.covisit_half_life_s) + 1)
    assert covisit_update([], T0, POOLS) is None


@pytest.mark.asyncio
async def test_pools_flow_into_the_store() -> None:
    store = MemoryFeatureStore()
    cfg = FeatureConfig()
    events = [
        ev(1, "view", "a", T0, "c1"),
        ev(2, "purchase", "b", T0, "c2"),
        ev(3, "view", "b", T0, "c2"),
        ev(4, "impression", "z", T0, "c1"),
    ]
    upd = decayed_updates(events, T0, cfg, POOLS)
    assert [u.spec.name for u in upd] == ["trending", "popular.c1", "popular.c2"]
    await store.write_batch(WriteBatch("events", decayed=upd))
    assert await store.read_decayed(POOLS.trending, 5, T0 + POOLS.trending_half_life_s) == [
        ("b", pytest.approx(3.0)),
        ("a", pytest.approx(0.5)),
    ]
    assert await store.read_decayed(POOLS.category_popular("c2"), 5, T0) == [("b", pytest.approx(6.0))]
    old = {"n2": ItemRecord("n2", "c1", created_at=T0 - 5)}
    recs = [
        ItemRecord("n1", "c1", created_at=T0),
        ItemRecord("n2", "c2", created_at=T0 - 5),
        ItemRecord("gone", "c1", available=False, created_at=T0 + 9),
    ]
    await store.write_batch(WriteBatch("items", pools=fresh_updates(recs, old, POOLS)))
    await store.write_batch(
        WriteBatch("items", pools=fresh_updates([ItemRecord("n2", "c1", created_at=T0 - 5)], {}, POOLS))
    )
    await store.write_batch(WriteBatch("items", pools=fresh_updates(recs[1:2], {"n2": ItemRecord("n2", "c1")}, POOLS)))
    assert await store.read_pool("fresh", 10) == [("n1", T0), ("n2", T0 - 5)]
    assert await store.read_pool("fresh:c1", 10) == [("n1", T0)]
    assert await store.read_pool("fresh:c2", 10) == [("n2", T0 - 5)]
