"""``streamrec bench metrics-cost``: closed-loop serving throughput with metrics on and off, in the same run.

Two runtimes share one warmed world (in-memory store filled by the real events core, the same trained
version); they differ only in ``metrics.enabled``, which injects ``Metrics`` (with the drift monitor and the
ANN recall sampler) or ``NullMetrics`` (and no monitors). Each round drives one of them as fast as it answers
through the serving path (``metrics.request``, the full funnel with its metric and drift calls, encoding the
response and the impression), alternating ``on, off, off, on, ...`` so slow drifts of a shared machine cancel.
The periodic jobs a live worker adds (the drift refresh, the ANN recall check in a thread, a ``/metrics`` scrape
rendered in a thread) run at their configured intervals on the on-rounds' own clock (:class:`OnClock`).
Kafka is left out on purpose: the broker round trip would only add the same cost to both sides.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import statistics
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from prometheus_client import generate_latest

from agents.events import process_batch
from agents.ingest import RawMessage
from agents.monitors import check_recall
from agents.runtime import Runtime
from agents.serve import answer
from state.items import ItemRecord
from state.pools import fresh_updates
from state.store import WriteBatch
from streams.bench.harness import simulated_lines, summarize_ms
from streams.bench.serve import with_trained_model
from streams.codec import decode_item, encode
from streams.errors import DecodeError
from streams.records import RecommendRequest
from streams.settings import Settings

TARGET_COST = 0.05
"""Issue 6: metrics may cost at most 5 % of serving throughput."""


@dataclass(frozen=True, slots=True)
class CostLoad:
    """Rounds of ``seconds`` each per mode, clients in the closed loop, list size and the simulated world."""

    rounds: int = 30
    seconds: float = 2.0
    concurrency: int = 4
    k: int = 10
    warm_events: int = 30_000
    users: int = 5_000
    items: int = 5_000
    scrape_s: float = 15.0

    def user_of(self, i: int) -> str:
        return f"u{(i * 7919) % self.users}"


class _Table:
    """Stands in for the Faust table: the events core writes ``data`` and a changelog we do not need."""

    def __init__(self) -> None:
        self.data: dict[bytes, Any] = {}

    def send_changelog(self, *args: object) -> None:
        pass


class _NoDeadLetters:
    count = 0

    async def send(self, exc: DecodeError, msg: object) -> None:
        self.count += 1


async def warm(rt: Runtime, events: Sequence[bytes], catalog: Sequence[bytes]) -> None:
    """Apply the catalog and the events through the real cores into ``rt``'s store, table and caches."""
    items: dict[str, ItemRecord] = {}
    for raw in catalog:
        update = decode_item(raw, now=rt.clock.now(), limits=rt.settings.validation)
        items[update.item_id] = ItemRecord.from_update(update)
    pools = fresh_updates(items.values(), rt.catalog, rt.pools)
    await rt.store.write_batch(WriteBatch(source=rt.topics.items, offsets={0: 0}, items=items, pools=pools))
    rt.catalog.update(items)
    table, size = _Table(), rt.settings.worker.batch_size
    applied: dict[int, int] = {}
    for start in range(0, len(events), size):
        msgs = [RawMessage(rt.topics.events, 0, start + j, None, v) for j, v in enumerate(events[start : start + size])]
        await process_batch(rt, msgs, applied, table, _NoDeadLetters())  # type: ignore[arg-type]
    rt.local_users = table.data
    rt.popular = await rt.store.top_popular(rt.settings.serving.popular_pool_size, rt.clock.now())


def twin(rt: Runtime, settings: Settings) -> Runtime:
    """A runtime with other settings over the same store, catalog, user table, popular list and model."""
    other = Runtime(settings=settings, store=rt.store, clock=rt.clock)
    other.catalog.update(rt.catalog)
    other.local_users = rt.local_users
    other.popular = rt.popular
    other.use_model(rt.model)
    return other


async def closed_loop(rt: Runtime, load: CostLoad, seconds: float, first: int) -> dict[str, Any]:
    """``load.concurrency`` clients, each sending its next request as soon as the last is answered."""
    latencies: list[float] = []
    fallbacks = 0
    stop = time.perf_counter() + seconds

    async def client(c: int) -> None:
        nonlocal fallbacks
        i = first + c
        while time.perf_counter() < stop:
            t0 = time.perf_counter()
            req = RecommendRequest(correlation_id=f"c{i}", user_id=load.user_of(i), k=load.k)
            rt.metrics.request()
            response, impression = await answer(rt, req, rt.clock.now())
            encode(response), encode(impression)
            latencies.append((time.perf_counter() - t0) * 1000.0)
            fallbacks += response.fallback
            i += load.concurrency
            await asyncio.sleep(0)  # let the other clients (and the monitors) in, as the event loop would

    started, cpu = time.perf_counter(), time.process_time()
    await asyncio.gather(*(client(c) for c in range(load.concurrency)))
    elapsed, cpu_s = time.perf_counter() - started, time.process_time() - cpu
    n = len(latencies)
    return {"requests": n, "rps": n / elapsed, "cpu_s": cpu_s, "rps_cpu": n / max(cpu_s, 1e-9),
            "fallbacks": fallbacks, **summarize_ms(latencies)}  # fmt: skip


class OnClock:
    """The worker's periodic metric jobs, due by the metrics-on rounds' own clock (their durations summed).

    Drift refresh every ``drift.interval_s``, recall check every ``metrics.ann_recall_interval_s`` and a
    ``/metrics`` scrape every ``scrape_s``, as in a live worker: over the run they cost what they would cost
    a worker serving for as long as the on-rounds lasted, and they never run in an off-round.
    """

    def __init__(self, rt: Runtime, scrape_s: float) -> None:
        self.rt = rt
        self.intervals = {"drift": rt.settings.drift.interval_s, "recall": rt.settings.metrics.ann_recall_interval_s,
                          "scrape": scrape_s}  # fmt: skip
        self.due = dict(self.intervals)
        self.elapsed = 0.0
        self.runs: Counter[str] = Counter()

    async def _job(self, name: str) -> None:
        if name == "drift":
            self.rt.drift.refresh()
        elif name == "recall":
            await check_recall(self.rt)
        else:
            await asyncio.to_thread(generate_latest, self.rt.registry)

    async def run(self) -> None:
        """Run the jobs that fall due during one round (cancelled when it ends)."""
        start = time.perf_counter()
        while True:
            name = min(self.due, key=lambda n: self.due[n])
            wait = self.due[name] - (self.elapsed + time.perf_counter() - start)
            if wait > 0:
                await asyncio.sleep(wait)
            await self._job(name)
            self.due[name] += self.intervals[name]
            self.runs[name] += 1

    async def round(self, rt: Runtime, load: CostLoad, first: int) -> dict[str, Any]:
        task = asyncio.create_task(self.run())
        try:
            return await closed_loop(rt, load, load.seconds, first)
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            self.elapsed += load.seconds


async def measure(on: Runtime, off: Runtime, load: CostLoad) -> dict[str, Any]:
    """Alternate metrics-on and metrics-off rounds (ABBA order); the throughput and its relative cost."""
    rounds: list[dict[str, Any]] = []
    clock = OnClock(on, load.scrape_s)
    await closed_loop(on, load, 1.0, 0), await closed_loop(off, load, 1.0, 0)  # warm-up both paths
    for r in range(load.rounds):
        for mode in ("on", "off") if r % 2 == 0 else ("off", "on"):
            first = 1_000_000 * (r + 1)
            res = (
                await clock.round(on, load, first)
                if mode == "on"
                else await closed_loop(off, load, load.seconds, first)
            )
            rounds.append({"round": r, "metrics": mode, **res})
    return {**summarize_rounds(rounds), "monitor_runs": dict(clock.runs), "monitor_intervals_s": clock.intervals}


def summarize_rounds(rounds: list[dict[str, Any]]) -> dict[str, Any]:
    """Medians per mode and the relative cost ``1 - on / off`` of the throughput, two ways.

    ``rps_cpu`` (requests per CPU-second of this process, monitor threads included) is what one dedicated
    core would sustain; it is the figure to judge on a shared machine, where wall-clock ``rps`` swings with
    the neighbours' load. The verdict uses ``throughput_cost_cpu_pooled``: every round's requests over every
    round's CPU seconds, per mode. ``*_paired`` is the median of the per-round costs (on and off back to back).

    >>> rs = [{"round": 0, "metrics": "on", "rps": 95.0, "rps_cpu": 190.0, "p50_ms": 2.0, "p99_ms": 4.0,
    ...        "requests": 190, "cpu_s": 1.0},
    ...       {"round": 0, "metrics": "off", "rps": 100.0, "rps_cpu": 200.0, "p50_ms": 1.9, "p99_ms": 3.8,
    ...        "requests": 200, "cpu_s": 1.0}]
    >>> s = summarize_rounds(rs)
    >>> s["throughput_cost_cpu_pooled"], s["throughput_cost_wall"], s["throughput_cost_cpu_paired"]
    (0.05, 0.05, 0.05)
    """
    out: dict[str, Any] = {}
    for mode in ("on", "off"):
        mine = [r for r in rounds if r["metrics"] == mode]
        cpu = sum(r.get("cpu_s", 0.0) for r in mine)
        out[f"metrics_{mode}"] = {
            "rps_cpu_pooled": round(sum(r.get("requests", 0) for r in mine) / cpu, 1) if cpu else float("nan"),
            "rps_cpu_median": round(statistics.median(r["rps_cpu"] for r in mine), 1),
            "rps_median": round(statistics.median(r["rps"] for r in mine), 1),
            "p50_ms_median": statistics.median(r["p50_ms"] for r in mine),
            "p99_ms_median": statistics.median(r["p99_ms"] for r in mine),
        }
    for basis, key in (("cpu", "rps_cpu"), ("wall", "rps")):
        on, off = out["metrics_on"][f"{key}_median"], out["metrics_off"][f"{key}_median"]
        out[f"throughput_cost_{basis}"] = round(1.0 - on / off, 4) if off else float("nan")
        pairs = _paired(rounds, key)
        out[f"throughput_cost_{basis}_paired"] = round(statistics.median(pairs), 4) if pairs else float("nan")
        if len(pairs) > 1:
            out[f"throughput_cost_{basis}_paired_mean"] = round(statistics.mean(pairs), 4)
            out[f"throughput_cost_{basis}_paired_se"] = round(statistics.stdev(pairs) / len(pairs) ** 0.5, 4)
    on_pooled, off_pooled = out["metrics_on"]["rps_cpu_pooled"], out["metrics_off"]["rps_cpu_pooled"]
    out["throughput_cost_cpu_pooled"] = round(1.0 - on_pooled / off_pooled, 4) if off_pooled else float("nan")
    out["within_target"] = out["throughput_cost_cpu_pooled"] <= TARGET_COST
    out["rounds"] = rounds
    return out


def _paired(rounds: list[dict[str, Any]], key: str) -> list[float]:
    by_round: dict[int, dict[str, float]] = {}
    for r in rounds:
        by_round.setdefault(r.get("round", 0), {})[r["metrics"]] = r[key]
    return [1.0 - m["on"] / m["off"] for m in by_round.values() if "on" in m and m.get("off")]


async def run_metrics_cost(base: Settings, load: CostLoad, *, logs: Path, train: str = "tiny") -> dict[str, Any]:
    """Train a version on a simulated log, warm one world, then measure both modes in alternating rounds."""
    events, catalog = simulated_lines(
        load.warm_events, seed=5, n_users=load.users, n_items=load.items, start=time.time() - 3600
    )
    worker = base.worker.model_copy(update={"store": "memory", "app_id": "bench-metrics-cost"})
    settings = with_trained_model(
        base.model_copy(update={"worker": worker}), events, catalog, train, logs / "metrics-cost"
    )
    on_settings = settings.model_copy(update={"metrics": settings.metrics.model_copy(update={"enabled": True})})
    off_settings = settings.model_copy(update={"metrics": settings.metrics.model_copy(update={"enabled": False})})
    on = Runtime.build(on_settings)
    await warm(on, events, catalog)
    off = twin(on, off_settings)
    gc.collect()
    gc.freeze()  # as the worker does after start-up
    result = await measure(on, off, load)
    return {
        "benchmark": "metrics-cost",
        "model": on.model_version,
        "drift_reference": on.model is not None and on.model.manifest.drift is not None,
        "warm_events": len(events),
        "users": load.users,
        "items": load.items,
        "k": load.k,
        "concurrency": load.concurrency,
        "round_seconds": load.seconds,
        "target_cost": TARGET_COST,
        **result,
    }
