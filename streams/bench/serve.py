"""``streamrec bench serve``: open-loop request load through the real broker, against the echo floor."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from agents.runtime import build_store
from streams.admin import drop_run_topics, ensure_topics
from streams.bench.catalog import build_big_catalog
from streams.bench.harness import (
    WorkerProcess,
    engaged_users,
    free_port,
    isolated,
    private_redis,
    profiled,
    simulated_lines,
    summarize_ms,
    timeline_ms,
    wait_listening,
    wait_until_serving,
)
from streams.bench.ingest import produce_paced, wait_handled
from streams.client import RecClient
from streams.errors import InfraError, RequestTimeoutError
from streams.records import RecommendResponse
from streams.settings import ServingSettings, Settings
from streams.topics import topic_names


@dataclass(slots=True)
class Legs:
    """Where each round trip went, from the wall clocks of client and worker (one machine, one clock):
    ``to_worker`` (produce, broker, the worker's fetch), ``in_worker`` (received to reply built) and
    ``back`` (reply produced, broker, the client's fetch)."""

    rows: list[tuple[float, float, float]] = field(default_factory=list)

    def add(self, sent: float, resp: RecommendResponse, got: float) -> None:
        replied = resp.served_at.timestamp()
        received = replied - resp.latency_ms / 1000.0
        self.rows.append(((received - sent) * 1e3, resp.latency_ms, (got - replied) * 1e3))

    def summary(self) -> dict[str, Any]:
        """p50/p99 of each leg, and each leg's mean over the slowest 1 % of round trips (``slowest_1pct``)."""
        if not self.rows:
            return {}
        a = np.asarray(self.rows, dtype=np.float64)
        slow = a[np.argsort(a.sum(axis=1))[-max(1, len(a) // 100) :]]
        names = ("to_worker", "in_worker", "back")
        out: dict[str, Any] = {
            name: {k: v for k, v in summarize_ms(a[:, j].tolist()).items() if k in ("p50_ms", "p99_ms")}
            for j, name in enumerate(names)
        }
        out["slowest_1pct"] = {name: round(float(slow[:, j].mean()), 3) for j, name in enumerate(names)}
        return out


@dataclass(slots=True)
class Tally:
    """What an open-loop run saw: each answered round trip (when it was sent, how long it took, what the
    worker reported) and the counts; :meth:`summary` is the benchmark's JSON."""

    latencies: list[float] = field(default_factory=list)
    sent_at: list[float] = field(default_factory=list)  # seconds into the run each answered request was sent
    stages: dict[str, list[float]] = field(default_factory=dict)
    sizes: dict[str, list[int]] = field(default_factory=lambda: {"candidates": [], "ranked": []})
    counts: dict[str, int] = field(
        default_factory=lambda: dict.fromkeys(("requests", "errors", "timeouts", "fallbacks"), 0)
    )
    legs: Legs = field(default_factory=Legs)

    def answered(self, at_s: float, ms: float, sent: float, resp: RecommendResponse, got: float) -> None:
        self.latencies.append(ms)
        self.sent_at.append(at_s)
        self.legs.add(sent, resp, got)
        for stage, stage_ms in [*resp.stage_ms.items(), ("worker_total", resp.latency_ms)]:
            self.stages.setdefault(stage, []).append(stage_ms)
        self.counts["errors"] += resp.error is not None
        self.counts["fallbacks"] += resp.fallback
        self.sizes["candidates"].append(resp.candidates)
        self.sizes["ranked"].append(resp.ranked)

    def summary(self) -> dict[str, Any]:
        """Counts, round-trip percentiles, ratios, per-stage p50/p99, sizes, legs and the timeline.

        >>> t = Tally()
        >>> t.counts.update(requests=2, timeouts=1)
        >>> s = t.summary()
        >>> s["answered_ratio"], s["fallback_ratio"], s["timeline"]
        (0.5, 0.0, [])
        """
        counts, answered = self.counts, self.counts["requests"] - self.counts["timeouts"]
        return {
            **counts,
            **summarize_ms(self.latencies),
            "answered_ratio": answered / max(1, counts["requests"]),
            "fallback_ratio": counts["fallbacks"] / max(1, answered),
            "stages": {
                name: {k: v for k, v in summarize_ms(ms).items() if k in ("p50_ms", "p99_ms")}
                for name, ms in sorted(self.stages.items())
            },
            **{f"{name}_p50": float(np.median(v)) if v else 0.0 for name, v in self.sizes.items()},
            **{f"{name}_min": min(v, default=0) for name, v in self.sizes.items()},
            "legs": self.legs.summary(),
            "timeline": timeline_ms(self.sent_at, self.latencies),
        }


async def open_loop(
    client: RecClient, rps: float, seconds: float, user_of: Callable[[int], str], k: int
) -> dict[str, Any]:
    """Send ``rps`` requests per second for ``seconds`` regardless of replies; measure each round trip."""
    tally = Tally()

    async def one(i: int) -> None:
        t0, sent = time.perf_counter(), time.time()
        try:
            resp = await client.recommend(user_of(i), k, deadline_ms=1000)
        except RequestTimeoutError:
            tally.counts["timeouts"] += 1
            return
        tally.answered(i / rps, (time.perf_counter() - t0) * 1000.0, sent, resp, time.time())

    tasks: list[asyncio.Task[None]] = []
    start, n = time.perf_counter(), int(rps * seconds)
    for i in range(n):
        delay = start + i / rps - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(one(i)))
        tally.counts["requests"] += 1
    await asyncio.gather(*tasks)
    return tally.summary()


async def measure_echo(settings: Settings, rps: float, seconds: float, logs: Path) -> dict[str, Any]:
    echo_settings = isolated(settings, "echo")
    await ensure_topics(echo_settings.kafka)
    try:
        with WorkerProcess(echo_settings, logs / "echo.log", module="streams.bench.echo", args=()) as proc:
            async with RecClient(echo_settings) as client:
                await wait_until_serving(client, proc)
                res = await open_loop(client, rps, seconds, lambda i: f"u{i % 1000}", 10)
    finally:
        await drop_run_topics(echo_settings)
    return {
        "echo_p50_ms": res["p50_ms"],
        "echo_p99_ms": res["p99_ms"],
        "echo_timeouts": res["timeouts"],
        "echo_legs": res["legs"],
    }


def with_trained_model(
    settings: Settings, events: list[bytes], catalog: list[bytes], config: str, work: Path
) -> Settings:
    """Train a model version on the bench's own simulated log and point ``settings`` at its registry."""
    from streams.demo import train_models

    work.mkdir(parents=True, exist_ok=True)
    (work / "events.jsonl").write_bytes(b"\n".join(events) + b"\n")
    (work / "catalog.jsonl").write_bytes(b"\n".join(catalog) + b"\n")
    train_models(work, work / "registry", config)
    return settings.model_copy(
        update={"models": settings.models.model_copy(update={"registry_dir": work / "registry"})}
    )


@dataclass(frozen=True, slots=True)
class ServeLoad:
    """The shape of a serve benchmark: open-loop rate and length, list size, and the simulated world."""

    rps: float
    seconds: float
    k: int
    warm_events: int
    users: int
    items: int
    candidates: int | None = None  # None: the serving settings' candidate limit and ANN size
    world_items: int = 20_000  # items the simulated users interact with; the rest of ``items`` is long tail
    history_only: bool = False  # ask only for users who engaged (session vector: ANN, co-visitation)

    @property
    def simulated_items(self) -> int:
        return min(self.items, self.world_items)

    @property
    def big_catalog(self) -> bool:
        return self.items > self.world_items

    def serving(self, serving: ServingSettings) -> ServingSettings:
        """Serving settings producing ``candidates`` merged candidates: ANN asks for three quarters of them,
        the pools and co-visitation (up to ``source_quotas``) fill the rest, the merge cuts at the limit."""
        if self.candidates is None:
            return serving
        ann = max(1, self.candidates * 3 // 4)
        quotas = {**serving.source_quotas, "ann": ann}
        return serving.model_copy(update={"candidate_limit": self.candidates, "ann_k": ann, "source_quotas": quotas})

    def user_of(self, i: int) -> str:
        """The i-th request's user: a fixed stride through the simulated users."""
        return f"u{(i * 7919) % self.users}"

    def users_from(self, active: Sequence[str]) -> Callable[[int], str]:
        """With ``history_only``, the same stride through ``active`` (users who engaged during the warm-up)."""
        if not self.history_only or not active:
            return self.user_of
        return lambda i: active[(i * 7919) % len(active)]


@asynccontextmanager
async def warmed_worker(
    settings: Settings, events: list[bytes], catalog: list[bytes], logs: Path
) -> AsyncIterator[tuple[RecClient, WorkerProcess]]:
    """Fresh topics, the catalog and events streamed in and handled, and a client the worker answers.

    Topics are deleted and connections closed on the way out.
    """
    names = topic_names(settings.kafka)
    await ensure_topics(settings.kafka)
    store = build_store(settings)
    try:
        await produce_paced(settings.kafka.bootstrap_servers, names.items, catalog, None)
        await produce_paced(settings.kafka.bootstrap_servers, names.events, events, None)
        with WorkerProcess(settings, logs / f"{settings.worker.app_id}.log") as worker:
            await wait_handled(store, names.items, len(catalog), worker, timeout_s=900)
            await wait_handled(store, names.events, len(events), worker, timeout_s=300)
            async with RecClient(settings) as client:
                await wait_until_serving(client, worker)
                yield client, worker
    finally:
        await store.close()
        await drop_run_topics(settings)


def _cpu_per_request(before: float | None, after: float | None, requests: float) -> float | None:
    """Milliseconds of worker CPU per request between two ``cpu_seconds`` readings (None where unknown).

    >>> _cpu_per_request(1.0, 3.0, 400), _cpu_per_request(None, 3.0, 400)
    (5.0, None)
    """
    if before is None or after is None or requests <= 0:
        return None
    return round((after - before) * 1000.0 / requests, 3)


def worker_memory_mb(worker: WorkerProcess) -> dict[str, float]:
    """Resident and peak resident memory of the worker process (Linux ``/proc``), in MiB."""
    if worker.proc is None:
        return {}
    out: dict[str, float] = {}
    for line in Path(f"/proc/{worker.proc.pid}/status").read_text(encoding="utf-8").splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            out[{"VmRSS": "rss_mb", "VmHWM": "peak_rss_mb"}[key]] = round(int(value.split()[0]) / 1024, 1)
    return out


async def run_serve(
    base: Settings,
    load: ServeLoad,
    *,
    logs: Path,
    train: str | None = "tiny",
    profile: Path | None = None,
    py_spy: str = "py-spy",
) -> dict[str, Any]:
    """Warm a worker with simulated traffic, load it open-loop, then measure the echo floor at the same rate.

    With ``profile``, py-spy records the worker over the measured requests only (not the warm-up) into it.

    A catalog larger than the simulated world streams through the items topic like any catalog, into a
    private Redis (a million item keys would crowd the shared one); it needs a model: the champion is
    re-indexed over the whole catalog.
    """
    settings = isolated(base, "bench-serve")
    settings = settings.model_copy(update={"serving": load.serving(settings.serving)})
    work = logs / settings.worker.app_id
    events, catalog = simulated_lines(
        load.warm_events, seed=5, n_users=load.users, n_items=load.simulated_items, start=time.time() - 3600
    )
    redis = None
    if load.big_catalog:
        if train is None:
            raise InfraError("a catalog larger than the simulated world needs a model (--train tiny|default)")
        port = free_port()
        redis = private_redis(port, work / "redis")
        url = f"redis://127.0.0.1:{port}/0"
        settings = settings.model_copy(update={"redis": settings.redis.model_copy(update={"url": url})})
    try:
        if redis is not None:
            await wait_listening(port, redis)
        if train is not None:
            settings = with_trained_model(settings, events, catalog, train, work)
        built = None
        if load.big_catalog:
            tail, built = await build_big_catalog(settings, catalog, load.items, load.world_items)
            catalog = catalog + tail
        started = time.perf_counter()
        async with warmed_worker(settings, events, catalog, logs) as (client, worker):
            warm_s = time.perf_counter() - started
            user_of = load.users_from(engaged_users(events))
            await open_loop(client, load.rps, min(3.0, load.seconds), user_of, load.k)  # warm-up
            cpu0, main0 = worker.cpu_seconds(), worker.main_thread_cpu_seconds()
            with profiled(worker.proc.pid if worker.proc else None, profile, load.seconds, py_spy):
                res = await open_loop(client, load.rps, load.seconds, user_of, load.k)
            cpu = _cpu_per_request(cpu0, worker.cpu_seconds(), res["requests"])
            main = _cpu_per_request(main0, worker.main_thread_cpu_seconds(), res["requests"])
            memory = worker_memory_mb(worker)
    finally:
        if redis is not None:
            redis.kill()
            redis.wait()
    echo = await measure_echo(base, load.rps, load.seconds, logs)
    return {
        "benchmark": "serve",
        "rps": load.rps,
        "seconds": load.seconds,
        "k": load.k,
        "warm_events": len(events),
        "items": load.items,
        "simulated_items": load.simulated_items,
        "candidate_limit": settings.serving.candidate_limit,
        "ann_k": settings.serving.ann_k,
        "concurrency": settings.serving.concurrency,
        "faiss_threads": settings.serving.faiss_threads,
        "model": train or "none",
        "requested_users": "with history" if load.history_only else "all simulated",
        **res,
        "worker_memory": memory,
        # the worker's CPU (every thread) over the measured requests: its cost per request, host speed aside
        "worker_cpu_ms_per_request": cpu,
        "worker_main_thread_cpu_ms_per_request": main,  # of which the event loop's thread (agents, funnel)
        "warm_up_s": round(warm_s, 1),  # catalog and events through the broker into the worker and the store
        **({"catalog": built} if built is not None else {}),
        "baseline": echo,
        "p99_over_echo_p99": round(res["p99_ms"] / max(echo["echo_p99_ms"], 1e-9), 2),
    }
