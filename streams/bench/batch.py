"""``streamrec bench batch``: users/s of batch scoring over real Redis, with state written by the ingest core."""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from agents.batch import BatchConfig
from agents.batch_job import BatchJob, load_ranker_version, one_search_thread
from agents.ingest import RawMessage, plan_batch, triage
from agents.runtime import build_store
from state.features import FeatureConfig
from state.items import ItemRecord
from state.pools import PoolConfig
from state.redis_store import RedisFeatureStore
from state.session_tower import SessionTower
from state.store import OnlineFeatureStore, WriteBatch
from state.user_state import UserState
from streams.codec import decode_item
from streams.jobs import JobStore
from streams.settings import Settings

CHUNK = 5_000


async def fill_store(
    settings: Settings, store: OnlineFeatureStore, events: Sequence[bytes], catalog: Sequence[bytes]
) -> int:
    """Write what the events and items agents would (the same pure core, no Kafka); the number of users."""
    now = time.time()
    items = {
        u.item_id: ItemRecord.from_update(u)
        for u in (decode_item(raw, now=now, limits=settings.validation) for raw in catalog)
    }
    await store.write_batch(WriteBatch("items", items=items))
    cfg, pools = FeatureConfig.from_settings(settings.features), PoolConfig(**settings.pools.model_dump())
    states: dict[str, UserState] = {}
    for k in range(0, len(events), CHUNK):
        msgs = [RawMessage("events", 0, k + j, None, v) for j, v in enumerate(events[k : k + CHUNK])]
        ok, dead = triage(msgs, now, settings.validation)
        plan = plan_batch(
            msgs,
            ok,
            dead,
            cfg=cfg,
            pools=pools,
            states=states.get,
            catalog=items,
            applied_offsets={0: k - 1},
            source="events",
        )
        states.update(plan.users)
        if plan.write is not None:
            await store.write_batch(plan.write)
    tower = SessionTower(load_ranker_version(settings))
    ids = list(states)
    for k in range(0, len(ids), CHUNK):
        chunk = [states[u] for u in ids[k : k + CHUNK]]
        await store.write_batch(WriteBatch("vectors", user_vectors=tower.embed(chunk)))
    return len(states)


async def run_batch_bench(
    settings: Settings,
    events: Sequence[bytes],
    catalog: Sequence[bytes],
    *,
    top_k: int,
    max_users: int | None,
    work: Path,
) -> dict[str, Any]:
    """Fill a private key prefix, time ``batch-score --out redis`` over it, then delete the prefix."""
    one_search_thread()
    store = build_store(settings)
    assert isinstance(store, RedisFeatureStore)
    try:
        t0 = time.perf_counter()
        n_users = await fill_store(settings, store, events, catalog)
        fill_s = time.perf_counter() - t0
        b = settings.batch
        cfg = BatchConfig(
            top_k=top_k,
            max_users=max_users,
            chunk_size=b.chunk_size,
            concurrency=b.concurrency,
            scan_count=b.scan_count,
        )
        t1 = time.perf_counter()
        rec, summary = await BatchJob(settings, store, cfg).run(JobStore(work / "jobs"))
        wall = time.perf_counter() - t1
        return {
            "users_in_store": n_users,
            "fill_seconds": round(fill_s, 2),
            "job": rec.model_dump(mode="json"),
            "users": rec.counts.users,
            "written": rec.counts.written,
            "failed": rec.counts.failed,
            "scoring_seconds": round(summary.seconds, 3),
            "users_per_s": round(summary.users_per_s, 1),
            "job_wall_seconds": round(wall, 3),
            "users_per_s_with_setup": round(rec.counts.users / wall, 1),
            "chunk_size": b.chunk_size,
            "concurrency": b.concurrency,
        }
    finally:
        keys = [k async for k in store.client.scan_iter(match=store.keys.pattern(), count=1000)]
        for k in range(0, len(keys), 10_000):
            await store.client.delete(*keys[k : k + 10_000])
        await store.close()
