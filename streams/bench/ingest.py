"""``streamrec bench ingest``: worker throughput and lag through the real broker, against a bare consumer."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from agents.runtime import build_store
from state.store import OnlineFeatureStore
from streams.admin import partitions_of
from streams.bench.harness import WorkerProcess
from streams.produce import key_of
from streams.settings import KafkaSettings, Settings
from streams.topics import topic_names


@dataclass
class SendLog:
    """When each (partition, offset) was handed to the producer, for lag computed after the run."""

    sent: dict[int, dict[int, float]] = field(default_factory=dict)

    def send_time(self, partition: int, offset: int) -> float | None:
        return self.sent.get(partition, {}).get(offset)


async def produce_paced(
    bootstrap: str, topic: str, lines: Sequence[bytes], rate: float | None
) -> tuple[SendLog, float]:
    """Produce ``lines`` at ``rate``/s (or flat out); return the send log and the achieved rate."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=2, acks=1, max_batch_size=262_144)
    await producer.start()
    pending: list[tuple[float, Any]] = []
    start = time.perf_counter()
    try:
        for i, line in enumerate(lines):
            if rate:
                ahead = start + i / rate - time.perf_counter()
                if ahead > 0.001:
                    await asyncio.sleep(ahead)
            pending.append((time.perf_counter(), await producer.send(topic, line, key=key_of(line))))
        await producer.flush()
        elapsed = time.perf_counter() - start
        log = SendLog()
        for t, fut in pending:
            md = await fut
            log.sent.setdefault(md.partition, {})[md.offset] = t
    finally:
        await producer.stop()
    return log, len(lines) / max(elapsed, 1e-9)


async def bare_consume_rate(kafka: KafkaSettings, topic: str, n: int) -> float:
    """The ceiling: a plain aiokafka loop reading ``n`` records from the beginning, doing nothing with them."""
    tps = [TopicPartition(topic, p) for p in await partitions_of(kafka, topic)]
    consumer = AIOKafkaConsumer(
        bootstrap_servers=kafka.bootstrap_servers, enable_auto_commit=False, max_partition_fetch_bytes=4 << 20
    )
    await consumer.start()
    try:
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        seen, start = 0, time.perf_counter()
        while seen < n:
            for recs in (await consumer.getmany(timeout_ms=500, max_records=10_000)).values():
                seen += len(recs)
        return seen / (time.perf_counter() - start)
    finally:
        await consumer.stop()


async def sample_watermarks(
    store: OnlineFeatureStore, source: str, stop: asyncio.Event, every_s: float = 0.05
) -> list[tuple[float, dict[int, int]]]:
    samples: list[tuple[float, dict[int, int]]] = []
    while not stop.is_set():
        samples.append((time.perf_counter(), await store.applied_offsets(source)))
        await asyncio.sleep(every_s)
    return samples


def lag_series(samples: Sequence[tuple[float, dict[int, int]]], log: SendLog) -> list[float]:
    """Per sample, the age of the oldest produced-but-unhandled event (0 when caught up)."""
    out: list[float] = []
    for t, applied in samples:
        worst = 0.0
        for p, offsets in log.sent.items():
            sent = offsets.get(applied.get(p, -1) + 1)
            if sent is not None and sent <= t:
                worst = max(worst, t - sent)
        out.append(worst)
    return out


@dataclass
class Drain:
    """Progress of a backlog drain: first progress and completion (wall time, worker CPU), handled at first."""

    t0: float
    t1: float
    handled_at_t0: int
    cpu0: float | None = None
    cpu1: float | None = None

    def rate(self, total: int) -> float:
        """Events per wall-second from first progress to the end of ``total`` events."""
        return (total - self.handled_at_t0) / max(self.t1 - self.t0, 1e-9)


async def wait_drained(
    store: OnlineFeatureStore, source: str, total: int, worker: WorkerProcess, timeout_s: float
) -> Drain:
    """Poll until ``total`` messages are handled, noting when progress started and the worker's CPU then."""
    first: tuple[float, int, float | None] | None = None
    end = time.perf_counter() + timeout_s
    while time.perf_counter() < end:
        if not worker.alive():
            raise RuntimeError(f"worker died; see {worker.log_path}")
        handled = sum(o + 1 for o in (await store.applied_offsets(source)).values())
        now = time.perf_counter()
        if handled and first is None:
            first = (now, handled, worker.cpu_seconds())
        if handled >= total:
            assert first is not None
            return Drain(first[0], now, first[1], first[2], worker.cpu_seconds())
        await asyncio.sleep(0.02)
    raise RuntimeError(f"worker handled fewer than {total} events within {timeout_s:.0f} s; see {worker.log_path}")


async def wait_handled(
    store: OnlineFeatureStore, source: str, total: int, worker: WorkerProcess, timeout_s: float
) -> tuple[float, float, int]:
    """Poll until ``total`` messages are handled; return (first progress time, done time, handled at first)."""
    d = await wait_drained(store, source, total, worker, timeout_s)
    return d.t0, d.t1, d.handled_at_t0


async def run_ingest(
    settings: Settings,
    backlog: Sequence[bytes],
    paced: Sequence[bytes],
    rate: float,
    logs: Path,
    *,
    seconds: float = 20.0,
    share: float = 0.8,
) -> dict[str, Any]:
    """Capacity from draining ``backlog``; lag while ``paced`` arrives at ``rate``; the bare ceiling alongside.

    ``rate`` 0 means ``share`` of the drain rate just measured (the lag phase then runs ``seconds`` long
    and takes the first events of ``paced``, which must hold enough of them).
    """
    names = topic_names(settings.kafka)
    servers = settings.kafka.bootstrap_servers
    await produce_paced(servers, names.events, backlog, None)
    bare = await bare_consume_rate(settings.kafka, names.events, len(backlog))
    store = build_store(settings)
    try:
        with WorkerProcess(settings, logs / f"{settings.worker.app_id}.log") as worker:
            drain = await wait_drained(store, names.events, len(backlog), worker, timeout_s=300)
            if rate <= 0:
                rate = round(share * drain.rate(len(backlog)), 1)
                paced = paced[: int(rate * seconds)]
            stop = asyncio.Event()
            sampler = asyncio.create_task(sample_watermarks(store, names.events, stop))
            log, achieved = await produce_paced(servers, names.events, paced, rate)
            await wait_handled(store, names.events, len(backlog) + len(paced), worker, timeout_s=120)
            stop.set()
            lags = lag_series(await sampler, log)
    finally:
        await store.close()
    lags_sorted = sorted(lags) or [0.0]
    return {
        "events_per_s": round(drain.rate(len(backlog)), 1),
        **_cpu_figures(drain, len(backlog)),
        "backlog_events": len(backlog),
        "lag_phase": {"target_rate": rate, "achieved_rate": round(achieved, 1), "events": len(paced)},
        "max_lag_s": round(lags_sorted[-1], 4),
        "p99_lag_s": round(lags_sorted[int(0.99 * (len(lags_sorted) - 1))], 4),
        "baseline": {"bare_consume_events_per_s": round(bare, 1)},
        "worker": {
            "batch_size": settings.worker.batch_size,
            "batch_within_s": settings.worker.batch_within_s,
            "partitions": settings.kafka.partitions,
            "store": settings.worker.store,
        },
    }


def _cpu_figures(drain: Drain, backlog: int) -> dict[str, Any]:
    """The drain's worker CPU: seconds used, events per CPU-second, and the share of one core it got."""
    if drain.cpu0 is None or drain.cpu1 is None or drain.cpu1 <= drain.cpu0:
        return {}
    cpu = drain.cpu1 - drain.cpu0
    return {
        "events_per_cpu_s": round((backlog - drain.handled_at_t0) / cpu, 1),
        "worker_cpu_s": round(cpu, 2),
        "worker_core_share": round(cpu / max(drain.t1 - drain.t0, 1e-9), 3),
    }
