"""Redis goes away mid-run: every request is still answered, and no event is lost once it is back."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

from agents.runtime import build_store
from streams.bench.faults import private_redis
from streams.bench.harness import WorkerProcess, simulated_lines, user_ids, wait_until_serving
from streams.bench.ingest import produce_paced, wait_handled
from streams.client import RecClient
from streams.records import RecommendResponse
from streams.settings import Settings
from streams.topics import topic_names
from tests.integration.conftest import LOGS, drop_topics, fresh_settings

PORT = 16391


async def ask(settings: Settings, users: list[str]) -> list[RecommendResponse]:
    async with RecClient(settings) as client:
        await wait_until_serving(client, None)
        return list(await asyncio.gather(*(client.recommend(u, 5, deadline_ms=2000) for u in users)))


async def handled(settings: Settings, n: int, worker: WorkerProcess) -> None:
    store = build_store(settings)
    try:
        await wait_handled(store, topic_names(settings.kafka).events, n, worker, timeout_s=120)
    finally:
        await store.close()


def test_requests_answered_while_redis_is_down_and_events_applied_after(
    base_settings: Settings, tmp_path: Path
) -> None:
    settings = fresh_settings(base_settings, "redis-outage")
    settings = settings.model_copy(
        update={"redis": settings.redis.model_copy(update={"url": f"redis://127.0.0.1:{PORT}/0"})}
    )
    names = topic_names(settings.kafka)
    servers = settings.kafka.bootstrap_servers
    lines, catalog = simulated_lines(6_000, seed=8, n_users=200, n_items=300, start=time.time() - 3600)
    users = user_ids(lines)[:40]
    redis = private_redis(PORT, tmp_path)
    time.sleep(0.5)
    worker = WorkerProcess(settings, LOGS / f"{settings.worker.app_id}.log").start()
    try:
        asyncio.run(produce_paced(servers, names.items, catalog, None))
        asyncio.run(produce_paced(servers, names.events, lines[:4_000], None))
        asyncio.run(handled(settings, 4_000, worker))
        time.sleep(2 * settings.serving.popular_refresh_s)  # the worker's cached popular list is current
        redis.kill()
        redis.wait()
        during = asyncio.run(ask(settings, users))
        asyncio.run(produce_paced(servers, names.events, lines[4_000:], None))
        time.sleep(1.0)
        assert worker.alive()
        redis = private_redis(PORT, tmp_path)  # back, empty: the worker re-reads its watermarks and catches up
        time.sleep(0.5)
        asyncio.run(handled(settings, len(lines), worker))
    finally:
        worker.stop()
        redis.kill()
        drop_topics(settings)
    assert [r.user_id for r in during] == users
    assert all(r.error is None and r.items for r in during), [(r.error, len(r.items), r.fallback) for r in during][:5]
    assert all(r.fallback for r in during)  # degraded answers are flagged
