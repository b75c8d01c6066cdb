"""A small seeded world for the funnel tests: catalog, pools, co-visitation, a user, embeddings, an exact index."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from agents.funnel.embeddings import ItemVectors
from agents.funnel.sources import AnnSource, CovisitSource, PoolSource
from state.ann import ExactIndex
from state.feature_config import EventView, FeatureConfig
from state.features import apply_events, new_user_state
from state.items import ItemCounts, ItemRecord
from state.memory_store import MemoryFeatureStore
from state.pools import PoolConfig
from state.store import CovisitUpdate, DecayedUpdate, PoolUpdate, WriteBatch
from state.user_state import UserState

T0 = 1_700_000_000.0
CATS = ("shoes", "bags", "hats", "books")
POOLS = PoolConfig()
CFG = FeatureConfig()
DIM = 8


def catalog(n: int = 60) -> dict[str, ItemRecord]:
    """Items ``i00``..; every 7th unavailable; prices and counters vary with the index."""
    out = {}
    for j in range(n):
        item = f"i{j:02d}"
        counts = ItemCounts((10 * j, j % 9, j % 4, j % 3, 40 + 5 * j))
        out[item] = ItemRecord(
            item, CATS[j % 4], f"b{j % 3}", 5.0 + 3.0 * j, j % 7 != 6, T0 - 86400.0 * (j % 10), counts
        )
    return out


def user_state(user: str = "u1") -> UserState:
    """Viewed i01, i05, i09 (shoes), clicked i05, bought i13; saw i20 and did nothing."""
    evs = [
        EventView("e1", "view", user, "i01", T0 - 900, "s", 6.0, "bags"),
        EventView("e2", "view", user, "i05", T0 - 800, "s", 20.0, "bags"),
        EventView("e3", "click", user, "i05", T0 - 700, "s", 20.0, "bags"),
        EventView("e4", "impression", user, "i20", T0 - 650, "s", None, "shoes"),
        EventView("e5", "view", user, "i09", T0 - 600, "s", 32.0, "bags"),
        EventView("e6", "purchase", user, "i13", T0 - 500, "s", 44.0, "bags"),
    ]
    state = new_user_state(user)
    apply_events(state, evs, CFG)
    return state


def vectors(n: int = 60, seed: int = 7) -> ItemVectors:
    rng = np.random.default_rng(seed)
    return ItemVectors([f"i{j:02d}" for j in range(n)], rng.normal(size=(n, DIM)).astype(np.float32))


def exact_index(iv: ItemVectors) -> ExactIndex:
    index = ExactIndex(iv.dim)
    index.add(np.arange(len(iv.ids), dtype=np.int64), iv.vectors[: len(iv.ids)])
    return index


@dataclass
class World:
    store: MemoryFeatureStore
    items: dict[str, ItemRecord]
    state: UserState
    vectors: ItemVectors
    index: ExactIndex


async def build_world(n: int = 60) -> World:
    """Write the catalog, popularity, trending, per-category, fresh, co-visitation and the user into a store."""
    store = MemoryFeatureStore()
    items = catalog(n)
    iv = vectors(n)
    pop = {i: float(j) for j, i in enumerate(items)}
    per_cat = [
        DecayedUpdate(
            POOLS.category_popular(c), T0, {i: float(j) for j, i in enumerate(items) if items[i].category == c}
        )
        for c in CATS
    ]
    trend = DecayedUpdate(POOLS.trending, T0, {i: float(n - j) for j, i in enumerate(items) if j % 2 == 0})
    fresh = PoolUpdate("fresh", {i: r.created_at for i, r in items.items()}, keep=20)
    covisit = CovisitUpdate(
        POOLS.covisit_half_life_s,
        20,
        T0,
        {"i05": {"i30": 3.0, "i31": 2.0, "i09": 1.0}, "i09": {"i31": 2.0, "i32": 1.0}},
    )
    state = user_state()
    await store.write_batch(
        WriteBatch(
            "test",
            users={"u1": state},
            popularity=pop,
            popularity_ref=T0,
            items=items,
            item_counts={i: r.counts for i, r in items.items()},
            user_vectors={"u1": iv.vectors[5] + iv.vectors[9]},
            decayed=[trend, *per_cat],
            pools=[fresh],
            covisit=covisit,
        )
    )
    return World(store, items, state, iv, exact_index(iv))


def all_sources(w: World) -> list[AnnSource | CovisitSource | PoolSource]:
    return [
        AnnSource(w.index, w.vectors.ids, k=30),
        CovisitSource(w.store, POOLS),
        PoolSource(w.store, "category", POOLS, n=20),
        PoolSource(w.store, "trending", POOLS, n=20),
        PoolSource(w.store, "fresh", POOLS, n=20),
        PoolSource(w.store, "popular", POOLS, n=30),
    ]
