"""``streamrec bench ingest|serve``: benchmarks against the real broker that write JSON."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any, Optional

import typer
from rich.console import Console

console = Console()
LOGS = Path(".run/bench-logs")
MAX_AUTO_RATE = 25_000.0  # events simulated for a lag phase at 80 % of a drain rate not known in advance
JsonOut = Annotated[Optional[Path], typer.Option("--json", help="write the result JSON here")]
Train = Annotated[
    str, typer.Option(help="session embeddings: train a model (tiny|default), reuse a registry directory, or none")
]


def _with_model(settings: Any, train: str, events: list[bytes], catalog: list[bytes]) -> Any:
    """Point ``settings`` at a model: trained on the bench's own events, or an existing registry's champion."""
    from streams.bench.serve import with_trained_model

    if train == "none":
        return settings
    if train not in ("tiny", "default"):
        registry = Path(train)
        if not (registry / "CHAMPION").is_file():
            raise typer.BadParameter(f"{registry} is not a model registry with a champion", param_hint="--train")
        return settings.model_copy(update={"models": settings.models.model_copy(update={"registry_dir": registry})})
    return with_trained_model(settings, events, catalog, train, LOGS / settings.worker.app_id)


@contextmanager
def _private_world(settings: Any, catalog: list[bytes]) -> Iterator[Any]:
    """``settings`` on a private Redis (the shared one's load from other work would stall the worker's writes),
    with fresh topics holding the catalog; the topics are deleted afterwards."""
    from streams.admin import drop_run_topics, ensure_topics
    from streams.bench.ingest import produce_paced
    from streams.bench.memory import private_redis_url
    from streams.topics import topic_names

    with private_redis_url(LOGS / settings.worker.app_id / "redis") as url:
        settings = settings.model_copy(update={"redis": settings.redis.model_copy(update={"url": url})})
        asyncio.run(ensure_topics(settings.kafka))
        try:
            asyncio.run(
                produce_paced(settings.kafka.bootstrap_servers, topic_names(settings.kafka).items, catalog, None)
            )
            yield settings
        finally:
            asyncio.run(drop_run_topics(settings))


def _report(name: str, result: dict[str, Any], out: Path | None) -> None:
    from streams.bench.harness import write_json

    console.print_json(write_json(out, result).decode())
    if out is not None:
        console.print(f"[green]{name}[/] written to {out}")


def ingest(
    rate: Annotated[float, typer.Option(help="events/s during the lag phase (0: 80 % of the drain rate)")] = 0.0,
    seconds: Annotated[float, typer.Option(help="length of the lag phase")] = 20.0,
    backlog: Annotated[int, typer.Option(help="events drained to measure capacity")] = 100_000,
    users: int = 100_000,
    items: int = 20_000,
    train: Train = "tiny",
    json_out: JsonOut = None,
) -> None:
    """Worker capacity (backlog drain) and lag at a fixed rate, with a bare aiokafka consumer as the ceiling."""
    from streams.bench.harness import isolated, simulated_lines
    from streams.bench.ingest import run_ingest
    from streams.settings import load_settings

    settings = isolated(load_settings(), "bench-ingest")
    total = backlog + int((rate or MAX_AUTO_RATE) * seconds)
    events, catalog = simulated_lines(total, seed=11, n_users=users, n_items=items, start=time.time() - 4 * 3600)
    settings = _with_model(settings, train, events[:backlog], catalog)  # all features on: the tower runs per batch
    # A private Redis: the shared one's load from other work would otherwise stall this worker's writes.
    with _private_world(settings, catalog) as settings:
        result = asyncio.run(run_ingest(settings, events[:backlog], events[backlog:], rate, LOGS, seconds=seconds))
    result.update({"benchmark": "ingest", "users": users, "items": items, "seconds": seconds, "model": train})
    result["worker"]["redis"] = "private redis-server (a free port)"
    _report("ingest", result, json_out)


def serve(
    rps: Annotated[float, typer.Option(help="requests per second (open loop)")] = 100.0,
    seconds: float = 20.0,
    k: int = 10,
    warm_events: Annotated[int, typer.Option(help="simulated events streamed before the load")] = 50_000,
    users: int = 20_000,
    items: Annotated[int, typer.Option(help="catalog size; beyond --world-items it is simulated long tail")] = 20_000,
    world_items: Annotated[int, typer.Option(help="items the simulated users interact with")] = 20_000,
    candidates: Annotated[
        Optional[int], typer.Option(help="candidates after the merge (ANN fills up to it); default: settings")
    ] = None,
    history_only: Annotated[bool, typer.Option(help="ask only users who clicked, carted or bought (ANN path)")] = False,
    train: Annotated[str, typer.Option(help="train a model of this config first (tiny|default), or 'none'")] = "tiny",
    inject_faults: Annotated[bool, typer.Option(help="kill Redis, then retire the model, partway through")] = False,
    profile: Annotated[
        Optional[Path], typer.Option(help="py-spy raw stacks of the worker over the measured requests, into this file")
    ] = None,
    py_spy: Annotated[str, typer.Option(help="the py-spy executable (for --profile)")] = "py-spy",
    json_out: JsonOut = None,
) -> None:
    """Request -> response latency through the real broker, with the bare echo floor from the same run."""
    from streams.bench.serve import ServeLoad, run_serve
    from streams.settings import load_settings

    load = ServeLoad(
        rps=rps,
        seconds=seconds,
        k=k,
        warm_events=warm_events,
        users=users,
        items=items,
        candidates=candidates,
        world_items=world_items,
        history_only=history_only,
    )
    if inject_faults:
        from streams.bench.faults import run_with_faults

        result = asyncio.run(run_with_faults(load_settings(), load, logs=LOGS, train=train))
    else:
        trained = None if train == "none" else train
        result = asyncio.run(run_serve(load_settings(), load, logs=LOGS, train=trained, profile=profile, py_spy=py_spy))
    _report("serve", result, json_out)


def freshness(
    rate: Annotated[float, typer.Option(help="events/s while measuring")] = 5000.0,
    seconds: float = 10.0,
    warm_events: int = 100_000,
    users: Annotated[int, typer.Option(help="simulated users; Redis memory is measured over all of them")] = 100_000,
    items: int = 20_000,
    train: Train = "tiny",
    json_out: JsonOut = None,
) -> None:
    """Event produced -> user features and session embedding readable in Redis; Redis bytes per active user."""
    from streams.bench.freshness import run_freshness
    from streams.bench.harness import isolated, simulated_lines, user_ids
    from streams.settings import load_settings

    settings = isolated(load_settings(), "bench-fresh")
    events, catalog = simulated_lines(
        warm_events + int(rate * seconds), seed=13, n_users=users, n_items=items, start=time.time() - 4 * 3600
    )
    settings = _with_model(settings, train, events[:warm_events], catalog)
    active = user_ids(events)
    with _private_world(settings, catalog) as settings:
        result = asyncio.run(
            run_freshness(
                settings,
                warm=events[:warm_events],
                paced=events[warm_events:],
                rate=rate,
                users=active,
                n_users=users,
                logs=LOGS,
            )
        )
    result.update({"benchmark": "freshness", "target_rate": rate, "model": train, "active_users": len(active)})
    result["redis"] = "private redis-server (a free port)"
    _report("freshness", result, json_out)


def batch(
    users: int = 20_000,
    items: int = 20_000,
    events: Annotated[int, typer.Option(help="simulated events written as state before scoring")] = 200_000,
    top_k: Annotated[int, typer.Option("--top-k")] = 10,
    max_users: Annotated[Optional[int], typer.Option(help="score at most this many users")] = None,
    train: Annotated[str, typer.Option(help="model config trained on the simulated log (tiny|default)")] = "tiny",
    json_out: JsonOut = None,
) -> None:
    """Batch-score users/s over real Redis (a private key prefix, deleted afterwards)."""
    from streams.bench.batch import run_batch_bench
    from streams.bench.harness import isolated, simulated_lines
    from streams.bench.serve import with_trained_model
    from streams.settings import load_settings

    settings = isolated(load_settings(), "bench-batch")
    lines, catalog = simulated_lines(events, seed=17, n_users=users, n_items=items, start=time.time() - 4 * 3600)
    work = LOGS / settings.worker.app_id
    settings = with_trained_model(settings, lines, catalog, train, work)
    result = asyncio.run(run_batch_bench(settings, lines, catalog, top_k=top_k, max_users=max_users, work=work))
    result.update(
        {"benchmark": "batch", "model": train, "sim_users": users, "items": items, "events": events, "top_k": top_k}
    )
    _report("batch", result, json_out)


def metrics_cost(
    rounds: Annotated[int, typer.Option(help="rounds per mode (alternating on/off)")] = 30,
    seconds: Annotated[float, typer.Option(help="length of each round")] = 2.0,
    concurrency: Annotated[int, typer.Option(help="closed-loop clients")] = 4,
    k: int = 10,
    warm_events: int = 30_000,
    users: int = 5_000,
    items: int = 5_000,
    train: Annotated[str, typer.Option(help="model config trained first (tiny|default)")] = "tiny",
    scrape_s: Annotated[float, typer.Option(help="seconds between /metrics scrapes in metrics-on rounds")] = 15.0,
    json_out: JsonOut = None,
) -> None:
    """Serving throughput (closed loop, full funnel) and latency with metrics on and off in the same run."""
    from streams.bench.metrics_cost import CostLoad, run_metrics_cost
    from streams.settings import load_settings

    load = CostLoad(rounds, seconds, concurrency, k, warm_events, users, items, scrape_s)
    result = asyncio.run(run_metrics_cost(load_settings(), load, logs=LOGS, train=train))
    _report("metrics-cost", result, json_out)


def register(bench: typer.Typer) -> None:
    """Add the streaming benchmarks to the ``bench`` group."""
    bench.command("metrics-cost")(metrics_cost)
    bench.command("ingest")(ingest)
    bench.command("serve")(serve)
    bench.command("freshness")(freshness)
    bench.command("batch")(batch)
