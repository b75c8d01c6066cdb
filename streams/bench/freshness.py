"""``streamrec bench freshness``: event produced -> that user's state and session embedding readable in Redis."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from state.redis_store import RedisFeatureStore
from streams.bench.harness import WorkerProcess, summarize_ms
from streams.bench.ingest import SendLog, produce_paced, sample_watermarks, wait_handled
from streams.bench.memory import memory_report, used_memory
from streams.settings import Settings
from streams.topics import topic_names


def visible_after(samples: Sequence[tuple[float, dict[int, int]]], log: SendLog) -> list[float]:
    """Per event, seconds from its send to the first sample whose watermark covers it.

    A user's state, session vector and the partition watermark land in one MULTI/EXEC, so an event is
    readable exactly when the watermark of its partition reaches its offset.

    >>> log = SendLog({0: {5: 1.0, 6: 1.5}})
    >>> visible_after([(1.2, {0: 4}), (1.6, {0: 5}), (2.0, {0: 6})], log)
    [0.6000000000000001, 0.5]
    """
    out: list[float] = []
    for p, sent in log.sent.items():
        offsets = sorted(sent)
        i = 0
        for t, applied in samples:
            top = applied.get(p, -1)
            while i < len(offsets) and offsets[i] <= top:
                out.append(max(0.0, t - sent[offsets[i]]))
                i += 1
    return out


async def run_freshness(
    settings: Settings,
    *,
    warm: Sequence[bytes],
    paced: Sequence[bytes],
    rate: float,
    users: Sequence[str],
    n_users: int,
    logs: Path,
) -> dict[str, Any]:
    """Warm the worker with ``warm``, then stream ``paced`` at ``rate`` and time each event's visibility.

    ``settings.redis`` should be a private Redis: memory is then measured over ``n_users`` simulated
    users (see ``streams.bench.memory``) with nobody else's keys in ``INFO memory``.
    """
    names = topic_names(settings.kafka)
    servers = settings.kafka.bootstrap_servers
    patient = settings.redis.model_copy(update={"socket_timeout_s": 10.0})  # the bench's bulk reads, not the worker's
    store = RedisFeatureStore(patient, popularity_half_life_s=settings.features.popularity_half_life_s)
    try:
        baseline = await used_memory(store)
        with WorkerProcess(settings, logs / f"{settings.worker.app_id}.log") as worker:
            await produce_paced(servers, names.events, warm, None)
            await wait_handled(store, names.events, len(warm), worker, timeout_s=300)
            stop = asyncio.Event()
            sampler = asyncio.create_task(sample_watermarks(store, names.events, stop, every_s=0.005))
            log, achieved = await produce_paced(servers, names.events, paced, rate)
            await wait_handled(store, names.events, len(warm) + len(paced), worker, timeout_s=120)
            stop.set()
            ages = visible_after(await sampler, log)
        memory = await memory_report(store, users, n_users, baseline)
    finally:
        await store.close()
    summary = summarize_ms([a * 1000.0 for a in ages])
    return {
        "events_per_s": round(achieved, 1),
        "events": len(ages),
        "p50_ms": summary["p50_ms"],
        "p99_ms": summary["p99_ms"],
        "max_ms": summary["max_ms"],
        "sample_resolution_ms": 5.0,
        **memory,
        "mean_age_ms": round(float(np.mean(ages)) * 1000.0, 3) if ages else None,
        "measured_at": time.time(),
    }
