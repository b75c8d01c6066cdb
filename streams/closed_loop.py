"""``streamrec closed-loop``: simulated users react to what the live engine shows them, in an A/B test of two
model versions (one trained, one deliberately untrained), and the experiment report says which one won."""

from __future__ import annotations

import asyncio
import dataclasses
import math
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from aiokafka import AIOKafkaProducer

from agents.experiments import Estimate, ExperimentReport
from state.registry import FileRegistry
from streams.bench.harness import isolated, simulated_lines, user_ids
from streams.bench.serve import warmed_worker
from streams.client import RecClient
from streams.codec import encode
from streams.errors import RequestTimeoutError
from streams.settings import Experiment, ExperimentSettings, Settings, ValueFormula, Variant
from streams.simulator import SimConfig, Simulator
from streams.topics import topic_names

EXPERIMENT = "closed-loop"
Progress = Callable[[str, int, int], None]


def _no_progress(desc: str, done: int, total: int) -> None:
    pass


@dataclass(frozen=True, slots=True)
class LoopConfig:
    """The shape of a closed-loop run: the simulated shop, the warm-up log, and the lists asked for."""

    users: int = 600
    items: int = 800
    warm_events: int = 30_000
    requests: int = 3_000
    rps: float = 60.0  # at most; a user waits for its list, and at most ``concurrency`` wait at once
    concurrency: int = 8
    k: int = 10
    seed: int = 3
    trained: str = "tiny"
    weak: str = "untrained"
    value_formula: ValueFormula = "click"  # both arms: the headline metric is CTR, only the model differs


@dataclass
class LoopTally:
    """What the loop saw on its side of Kafka (a cross-check of the report, which reads the topics)."""

    answered: Counter[str] = dataclasses.field(default_factory=Counter)
    clicked: Counter[str] = dataclasses.field(default_factory=Counter)
    timeouts: int = 0
    events: int = 0


def experiment_for(trained: str, weak: str, formula: ValueFormula = "click") -> Experiment:
    """Two arms of equal share, pinned to the trained and the weak version, ranking by the same value formula."""
    return Experiment(
        name=EXPERIMENT,
        variants=(
            Variant(name="trained", share=0.5, model_version=trained, value_formula=formula),
            Variant(name="weak", share=0.5, model_version=weak, value_formula=formula),
        ),
    )


def train_pair(work: Path, cfg: LoopConfig, events: list[bytes], catalog: list[bytes]) -> tuple[str, str]:
    """Train both versions on the warm-up log; the trained one ends as champion. Returns (trained, weak)."""
    from streams.demo import train_models

    (work / "events.jsonl").write_bytes(b"\n".join(events) + b"\n")
    (work / "catalog.jsonl").write_bytes(b"\n".join(catalog) + b"\n")
    registry = work / "registry"
    trained = train_models(work, registry, cfg.trained)
    weak = train_models(work, registry, cfg.weak)
    FileRegistry(registry).promote(trained, force=True)
    return trained, weak


async def drive(
    client: RecClient,
    producer: AIOKafkaProducer,
    sim: Simulator,
    *,
    users: list[str],
    cfg: LoopConfig,
    events_topic: str,
    progress: Progress = _no_progress,
) -> LoopTally:
    """Ask for ``cfg.requests`` lists (at most ``cfg.rps``, at most ``cfg.concurrency`` in flight); each user
    reacts to the list shown, as events on Kafka."""
    tally = LoopTally()
    rng = np.random.default_rng(cfg.seed)
    picks = rng.choice(len(users), size=cfg.requests)
    slots = asyncio.Semaphore(cfg.concurrency)  # a closed loop: a slow engine slows the users, never drops lists

    async def one(user: str) -> None:
        try:
            async with slots:
                resp = await client.recommend(user, cfg.k, deadline_ms=2000)
        except RequestTimeoutError:
            tally.timeouts += 1
            return
        if resp.error is not None:
            return
        tally.answered[resp.variant] += 1
        reaction = sim.respond(
            user, [it.item_id for it in resp.items], time.time(), request_id=resp.correlation_id, impressions=False
        )
        tally.clicked[resp.variant] += any(ev.type == "click" for ev in reaction)
        for ev in reaction:
            await producer.send(events_topic, encode(ev), key=ev.user_id.encode())
        tally.events += len(reaction)

    tasks: list[asyncio.Task[None]] = []
    start = time.perf_counter()
    for i, u in enumerate(picks.tolist()):
        delay = start + i / cfg.rps - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(one(users[u])))
        if i % 100 == 0:
            progress("closed-loop requests", i, cfg.requests)
    await asyncio.gather(*tasks)
    await producer.flush()
    progress("closed-loop requests", cfg.requests, cfg.requests)
    return tally


def _estimate(e: Estimate) -> dict[str, float | None]:
    return {k: None if math.isnan(v) else round(v, 5) for k, v in dataclasses.asdict(e).items()}


def summarize(report: ExperimentReport, versions: dict[str, str], tally: LoopTally) -> dict[str, Any]:
    """The JSON document: per-variant rows, the winner by CTR and whether the intervals separate."""
    rows: dict[str, dict[str, Any]] = {
        r.variant: {
            "model_version": versions.get(r.variant),
            "requests": r.requests,
            "clicked": r.clicked,
            "converted": r.converted,
            "revenue": round(r.revenue, 2),
            "ctr": _estimate(r.ctr),
            "conversion": _estimate(r.conversion),
            "revenue_per_request": _estimate(r.revenue_per_request),
            "loop_answered": tally.answered.get(r.variant, 0),
            "loop_clicked": tally.clicked.get(r.variant, 0),
        }
        for r in report.variants
        if r.variant in versions
    }
    ranked = sorted(rows, key=lambda v: rows[v]["ctr"]["value"] or 0.0, reverse=True)
    winner = ranked[0] if ranked else None
    separated = len(ranked) == 2 and (rows[ranked[0]]["ctr"]["low"] or 0.0) > (rows[ranked[1]]["ctr"]["high"] or 1.0)
    return {
        "variants": rows,
        "winner_by_ctr": winner,
        "ctr_intervals_separate": separated,
        "confidence": report.confidence,
        "unattributed_events": report.unattributed_events,
        "timeouts": tally.timeouts,
        "reaction_events": tally.events,
    }


async def run_closed_loop(
    base: Settings, cfg: LoopConfig, *, logs: Path, progress: Progress = _no_progress
) -> dict[str, Any]:
    """Train the pair, warm a worker on fresh topics, run the loop, and report from the topics."""
    from streams.cli_ops import report_from_topics

    t0 = time.perf_counter()
    settings = isolated(base, "closed-loop")
    start = time.time() - 3600
    events, catalog = simulated_lines(cfg.warm_events, seed=cfg.seed, n_users=cfg.users, n_items=cfg.items, start=start)
    work = logs / settings.worker.app_id
    work.mkdir(parents=True, exist_ok=True)
    trained, weak = await asyncio.to_thread(train_pair, work, cfg, events, catalog)
    exp = experiment_for(trained, weak, cfg.value_formula)
    settings = settings.model_copy(
        update={
            "models": settings.models.model_copy(update={"registry_dir": work / "registry"}),
            "experiments": ExperimentSettings(active=(exp,)),
        }
    )
    sim = Simulator(SimConfig(seed=cfg.seed, start=start, n_users=cfg.users, n_items=cfg.items))
    users = user_ids(events)
    names = topic_names(settings.kafka)
    async with warmed_worker(settings, events, catalog, logs) as (client, _):
        producer = AIOKafkaProducer(bootstrap_servers=settings.kafka.bootstrap_servers, linger_ms=5, acks=1)
        await producer.start()
        try:
            tally = await drive(
                client, producer, sim, users=users, cfg=cfg, events_topic=names.events, progress=progress
            )
        finally:
            await producer.stop()
        await asyncio.sleep(2.0)  # the last impressions leave the worker after their replies
        report = await report_from_topics(settings.kafka)
    versions = {f"{EXPERIMENT}:trained": trained, f"{EXPERIMENT}:weak": weak}
    return {
        "benchmark": "closed-loop",
        "config": dataclasses.asdict(cfg),
        "versions": {"trained": trained, "weak": weak},
        **summarize(report, versions, tally),
        "seconds": round(time.perf_counter() - t0, 1),
    }
