"""Per-stage CPU timing of the funnel on a synthetic catalog (``python -m agents.funnel.timing``); not a test."""

from __future__ import annotations

import argparse
import asyncio
import gc
import tempfile
import time
from pathlib import Path

import numpy as np

from agents.funnel.candidates import CandidateSource
from agents.funnel.config import FunnelConfig
from agents.funnel.embeddings import ItemVectors
from agents.funnel.ordering import OrderingConfig
from agents.funnel.pipeline import Funnel
from agents.funnel.scoring import OnnxRanker
from agents.funnel.sources import AnnSource, CachedPool, CovisitSource, PoolKind, PoolSource
from agents.runtime import set_search_threads
from state.ann import build_index
from state.catalog_table import CatalogTable
from state.feature_config import EventView, FeatureConfig
from state.features import apply_events, new_user_state
from state.items import ItemCounts, ItemRecord
from state.live_index import LiveIndex
from state.memory_store import MemoryFeatureStore
from state.pools import PoolConfig
from state.store import CovisitUpdate, DecayedUpdate, PoolUpdate, WriteBatch
from streams.records import RecommendRequest
from streams.settings import DEFAULT_SOURCE_QUOTAS

T0 = 1_700_000_000.0
POOL_KINDS: tuple[PoolKind, ...] = ("trending", "fresh", "popular", "category")  # as agents.serving_setup.sources
CATS = 50


def _export_ranker(path: Path) -> OnnxRanker:
    from models.export import export_ranker
    from models.ranker import MultiTaskRanker, RankerConfig
    from models.ranker_features import RANKER_FEATURES

    n = len(RANKER_FEATURES)
    model = MultiTaskRanker(RankerConfig(), np.zeros(n, np.float32), np.ones(n, np.float32))  # default size
    export_ranker(model, path)
    return OnnxRanker.open(path)


async def _world(n_items: int, dim: int, rng: np.random.Generator) -> tuple[MemoryFeatureStore, ItemVectors]:
    store = MemoryFeatureStore()
    ids = [f"i{j}" for j in range(n_items)]
    items = {
        i: ItemRecord(
            i,
            f"c{j % CATS}",
            "b",
            float(5 + j % 300),
            j % 50 != 0,
            T0 - 3600.0 * (j % 500),
            ItemCounts((j % 97, j % 13, j % 5, j % 3, 50 + j % 211)),
        )
        for j, i in enumerate(ids)
    }
    pools = PoolConfig()
    pop = {i: float(rng.pareto(1.5)) for i in ids[:20_000]}
    decayed = [DecayedUpdate(pools.trending, T0, dict(list(pop.items())[:5000]))]
    decayed += [
        DecayedUpdate(
            pools.category_popular(f"c{c}"), T0, {i: s for i, s in pop.items() if items[i].category == f"c{c}"}
        )
        for c in range(CATS)
    ]
    vecs = ItemVectors(ids, rng.normal(size=(n_items, dim)).astype(np.float32))
    await store.write_batch(
        WriteBatch(
            "bench",
            popularity=pop,
            popularity_ref=T0,
            items=items,
            item_counts={i: r.counts for i, r in items.items()},
            decayed=decayed,
            pools=[PoolUpdate("fresh", {i: items[i].created_at for i in ids[:1000]}, keep=200)],
            covisit=CovisitUpdate(pools.covisit_half_life_s, 50, T0, _covisit(rng)),
        )
    )
    return store, vecs


def _covisit(rng: np.random.Generator) -> dict[str, dict[str, float]]:
    """Fifty co-visited items for each of the 20,000 items users interact with."""
    others = rng.integers(0, 20_000, size=(20_000, 50)).tolist()
    return {f"i{j}": {f"i{o}": 1.0 + k for k, o in enumerate(row)} for j, row in enumerate(others)}


async def _users(store: MemoryFeatureStore, vecs: ItemVectors, n: int, rng: np.random.Generator) -> list[str]:
    states, uvecs = {}, {}
    for u in range(n):
        st = new_user_state(f"u{u}")
        picks = rng.integers(0, 20_000, size=15)
        evs = [
            EventView(
                f"e{u}-{k}",
                "view" if k % 3 else "click",
                st.user_id,
                f"i{p}",
                T0 - 600 + 10 * k,
                "s",
                10.0,
                f"c{p % CATS}",
            )
            for k, p in enumerate(picks.tolist())
        ]
        apply_events(st, evs, FeatureConfig())
        states[st.user_id] = st
        uvecs[st.user_id] = vecs.vectors[picks].mean(axis=0)
    await store.write_batch(WriteBatch("bench", users=states, user_vectors=uvecs))
    return list(states)


async def bench(n_items: int, n_requests: int, k: int, dim: int, candidates: int) -> dict[str, float]:
    """Like a worker: ANN asks for three quarters of ``candidates``, the pools are cached, the catalog is local."""
    set_search_threads(1, blas=1)  # as a worker runs
    rng = np.random.default_rng(0)
    store, vecs = await _world(n_items, dim, rng)
    users = await _users(store, vecs, 50, rng)
    index = build_index(
        "ivf" if n_items > 50_000 else "exact",
        np.arange(n_items, dtype=np.int64),
        vecs.vectors[:n_items],
        **({"nlist": int(4 * n_items**0.5), "nprobe": 32} if n_items > 50_000 else {}),  # models.catalog_index
    )
    pools = PoolConfig()
    ann_k = candidates * 3 // 4
    live = LiveIndex(index, vecs.ids)
    sources: list[CandidateSource] = [
        AnnSource(live.index, live.item_ids, k=ann_k),
        CovisitSource(store, pools, space=live),
        *(CachedPool(PoolSource(store, kind, pools), ttl_s=1.0, space=live) for kind in POOL_KINDS),
    ]
    with tempfile.TemporaryDirectory() as tmp:
        ranker = _export_ranker(Path(tmp) / "ranker.onnx")
    quotas = {**DEFAULT_SOURCE_QUOTAS, "ann": ann_k}
    cfg = FunnelConfig(
        ordering=OrderingConfig(mmr_lambda=0.8, epsilon=0.05),
        catalog_first=True,
        candidate_limit=candidates,
        quotas=quotas,
    )
    catalog = CatalogTable()
    for rec in await store.read_items(vecs.ids):
        if rec is not None:
            catalog[rec.item_id] = rec
    funnel = Funnel(cfg, store, sources, ranker=ranker, vectors=vecs, catalog=catalog, index_ids=live.item_ids)
    gc.collect()
    gc.freeze()  # the world's million objects would otherwise be rescanned by every full collection
    stages: dict[str, list[float]] = {}
    totals, cpu, cands, ann = [], [], [], []
    for r in range(-20, n_requests):  # the first 20 warm up (ONNX, caches) and are not counted
        req = RecommendRequest(correlation_id=f"r{r}", user_id=users[r % len(users)], k=k)
        state = await store.read_user(req.user_id)
        c0, w0 = time.process_time(), time.perf_counter()
        res = await funnel.run(req, state, now=T0)
        if r < 0:
            continue
        totals.append((time.perf_counter() - w0) * 1000)
        cpu.append((time.process_time() - c0) * 1000)
        cands.append(res.n_candidates)
        for name, ms in res.stage_ms.items():
            stages.setdefault(name, []).append(ms)
        a0 = time.perf_counter()
        index.search(vecs.vectors[r % 1000][None, :], 600)
        ann.append((time.perf_counter() - a0) * 1000)
    out = {f"{n}_p50_ms": float(np.median(v)) for n, v in stages.items()}
    out |= {
        "total_p50_ms": float(np.median(totals)),
        "total_p99_ms": float(np.percentile(totals, 99)),
        "cpu_p50_ms": float(np.median(cpu)),
        "candidates_p50": float(np.median(cands)),
        "ann_search_p50_ms": float(np.median(ann)),
    }
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--items", type=int, default=100_000)
    ap.add_argument("--requests", type=int, default=300)
    ap.add_argument("--k", type=int, default=20)
    ap.add_argument("--dim", type=int, default=64)
    ap.add_argument("--candidates", type=int, default=1000)
    args = ap.parse_args()
    for name, v in asyncio.run(bench(args.items, args.requests, args.k, args.dim, args.candidates)).items():
        print(f"{name:>18} {v:8.3f}")


if __name__ == "__main__":
    main()
