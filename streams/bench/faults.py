"""``streamrec bench serve --inject-faults``: stop Redis, then retire the model, while requests flow."""

from __future__ import annotations

import asyncio
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

from streams.bench.harness import WorkerProcess, isolated, simulated_lines, wait_until_serving
from streams.bench.ingest import produce_paced, wait_handled
from streams.bench.serve import open_loop, with_trained_model
from streams.client import RecClient
from streams.settings import Settings
from streams.topics import topic_names

FAULT_REDIS_PORT = 16392


def private_redis(port: int, workdir: Path) -> subprocess.Popen[bytes]:
    """A throwaway Redis the benchmark may kill (never the shared one)."""
    workdir.mkdir(parents=True, exist_ok=True)
    exe = shutil.which("redis-server") or "redis-server"
    return subprocess.Popen(  # noqa: S603 - fixed arguments
        [exe, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", str(workdir)],
        stdout=subprocess.DEVNULL,
    )


async def inject(seconds: float, redis: subprocess.Popen[bytes], champion: Path, log: list[dict[str, Any]]) -> None:
    """At 1/3 of the run stop Redis; at 2/3 retire the served model (remove the registry's champion)."""
    start = time.perf_counter()
    await asyncio.sleep(seconds / 3)
    redis.kill()
    log.append({"at_s": round(time.perf_counter() - start, 2), "fault": "redis killed"})
    await asyncio.sleep(seconds / 3)
    await asyncio.to_thread(champion.unlink, missing_ok=True)
    log.append({"at_s": round(time.perf_counter() - start, 2), "fault": "model retired (no champion)"})


async def run_with_faults(
    base: Settings,
    *,
    rps: float,
    seconds: float,
    k: int,
    warm_events: int,
    users: int,
    items: int,
    logs: Path,
    train: str,
) -> dict[str, Any]:
    """The serve benchmark with a private Redis killed and the model retired partway through."""
    from agents.runtime import build_store

    settings = isolated(base, "bench-faults")
    settings = settings.model_copy(
        update={
            "redis": settings.redis.model_copy(update={"url": f"redis://127.0.0.1:{FAULT_REDIS_PORT}/0"}),
            "models": settings.models.model_copy(update={"poll_interval_s": 0.5}),
        }
    )
    events, catalog = simulated_lines(warm_events, seed=5, n_users=users, n_items=items, start=time.time() - 3600)
    work = logs / settings.worker.app_id
    settings = with_trained_model(settings, events, catalog, train, work)
    redis = private_redis(FAULT_REDIS_PORT, work / "redis")
    faults: list[dict[str, Any]] = []
    from streams.admin import delete_topics, ensure_topics
    from streams.topics import topic_specs

    await ensure_topics(settings.kafka)
    names, store = topic_names(settings.kafka), build_store(settings)
    try:
        await asyncio.sleep(0.5)
        await produce_paced(settings.kafka.bootstrap_servers, names.items, catalog, None)
        await produce_paced(settings.kafka.bootstrap_servers, names.events, events, None)
        with WorkerProcess(settings, logs / f"{settings.worker.app_id}.log") as worker:
            await wait_handled(store, names.events, len(events), worker, timeout_s=300)
            async with RecClient(settings) as client:
                await wait_until_serving(client, worker)
                fault_task = asyncio.create_task(
                    inject(seconds, redis, settings.models.registry_dir / "CHAMPION", faults)
                )
                res = await open_loop(client, rps, seconds, lambda i: f"u{(i * 7919) % users}", k)
                await fault_task
    finally:
        redis.kill()
        await delete_topics(settings.kafka, [s.name for s in topic_specs(settings.kafka)])
    return {"benchmark": "serve", "inject_faults": True, "faults": faults, "rps": rps, "seconds": seconds, **res}
