"""``streamrec bench serve --inject-faults``: stop Redis, then retire the model, while requests flow."""

from __future__ import annotations

import asyncio
import subprocess
import time
from pathlib import Path
from typing import Any

from streams.bench.harness import isolated, private_redis, simulated_lines
from streams.bench.serve import ServeLoad, open_loop, warmed_worker, with_trained_model
from streams.settings import Settings

FAULT_REDIS_PORT = 16392


async def inject(seconds: float, redis: subprocess.Popen[bytes], champion: Path, log: list[dict[str, Any]]) -> None:
    """At 1/3 of the run stop Redis; at 2/3 retire the served model (remove the registry's champion)."""
    start = time.perf_counter()
    await asyncio.sleep(seconds / 3)
    redis.kill()
    log.append({"at_s": round(time.perf_counter() - start, 2), "fault": "redis killed"})
    await asyncio.sleep(seconds / 3)
    await asyncio.to_thread(champion.unlink, missing_ok=True)
    log.append({"at_s": round(time.perf_counter() - start, 2), "fault": "model retired (no champion)"})


async def run_with_faults(base: Settings, load: ServeLoad, *, logs: Path, train: str) -> dict[str, Any]:
    """The serve benchmark with a private Redis killed and the model retired partway through."""
    settings = isolated(base, "bench-faults")
    settings = settings.model_copy(
        update={
            "redis": settings.redis.model_copy(update={"url": f"redis://127.0.0.1:{FAULT_REDIS_PORT}/0"}),
            "models": settings.models.model_copy(update={"poll_interval_s": 0.5}),
        }
    )
    events, catalog = simulated_lines(
        load.warm_events, seed=5, n_users=load.users, n_items=load.items, start=time.time() - 3600
    )
    work = logs / settings.worker.app_id
    settings = with_trained_model(settings, events, catalog, train, work)
    redis = private_redis(FAULT_REDIS_PORT, work / "redis")
    faults: list[dict[str, Any]] = []
    try:
        await asyncio.sleep(0.5)  # let the private Redis start listening
        async with warmed_worker(settings, events, catalog, logs) as (client, _):
            # warm, as the serve benchmark does: a cold worker's first second is slow with or without faults
            await open_loop(client, load.rps, min(3.0, load.seconds), load.user_of, load.k)
            champion = settings.models.registry_dir / "CHAMPION"
            fault_task = asyncio.create_task(inject(load.seconds, redis, champion, faults))
            res = await open_loop(client, load.rps, load.seconds, load.user_of, load.k)
            await fault_task
    finally:
        redis.kill()
    return {
        "benchmark": "serve",
        "inject_faults": True,
        "faults": faults,
        "rps": load.rps,
        "seconds": load.seconds,
        **res,
    }
