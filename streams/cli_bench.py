"""``streamrec bench ingest|serve``: benchmarks against the real broker that write JSON."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Annotated, Any, Optional

import typer
from rich.console import Console

console = Console()
LOGS = Path(".run/bench-logs")
JsonOut = Annotated[Optional[Path], typer.Option("--json", help="write the result JSON here")]


def _report(name: str, result: dict[str, Any], out: Path | None) -> None:
    from streams.bench.harness import write_json

    console.print_json(write_json(out, result).decode())
    if out is not None:
        console.print(f"[green]{name}[/] written to {out}")


def ingest(
    rate: Annotated[float, typer.Option(help="events/s during the lag phase")] = 8000.0,
    seconds: Annotated[float, typer.Option(help="length of the lag phase")] = 20.0,
    backlog: Annotated[int, typer.Option(help="events drained to measure capacity")] = 100_000,
    users: int = 100_000,
    items: int = 20_000,
    json_out: JsonOut = None,
) -> None:
    """Worker capacity (backlog drain) and lag at a fixed rate, with a bare aiokafka consumer as the ceiling."""
    from streams.admin import delete_topics, ensure_topics
    from streams.bench.harness import isolated, simulated_lines
    from streams.bench.ingest import produce_paced, run_ingest
    from streams.settings import load_settings
    from streams.topics import topic_names, topic_specs

    settings = isolated(load_settings(), "bench-ingest")
    total = backlog + int(rate * seconds)
    events, catalog = simulated_lines(total, seed=11, n_users=users, n_items=items, start=time.time() - 4 * 3600)
    asyncio.run(ensure_topics(settings.kafka))
    try:
        asyncio.run(produce_paced(settings.kafka.bootstrap_servers, topic_names(settings.kafka).items, catalog, None))
        result = asyncio.run(run_ingest(settings, events[:backlog], events[backlog:], rate, LOGS))
    finally:
        asyncio.run(delete_topics(settings.kafka, [s.name for s in topic_specs(settings.kafka)]))
    result.update({"benchmark": "ingest", "users": users, "items": items, "seconds": seconds})
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
        result = asyncio.run(run_serve(load_settings(), load, logs=LOGS, train=None if train == "none" else train))
    _report("serve", result, json_out)


def freshness(
    rate: Annotated[float, typer.Option(help="events/s while measuring")] = 5000.0,
    seconds: float = 10.0,
    warm_events: int = 100_000,
    users: int = 100_000,
    items: int = 20_000,
    train: Annotated[str, typer.Option(help="model config for session embeddings (tiny|default|none)")] = "tiny",
    json_out: JsonOut = None,
) -> None:
    """Event produced -> user features and session embedding readable in Redis; Redis bytes per active user."""
    from streams.admin import delete_topics, ensure_topics
    from streams.bench.freshness import run_freshness
    from streams.bench.harness import isolated, simulated_lines, user_ids
    from streams.bench.ingest import produce_paced
    from streams.bench.serve import with_trained_model
    from streams.settings import load_settings
    from streams.topics import topic_names, topic_specs

    settings = isolated(load_settings(), "bench-fresh")
    events, catalog = simulated_lines(
        warm_events + int(rate * seconds), seed=13, n_users=users, n_items=items, start=time.time() - 4 * 3600
    )
    if train != "none":
        settings = with_trained_model(settings, events[:warm_events], catalog, train, LOGS / settings.worker.app_id)
    active = user_ids(events)
    asyncio.run(ensure_topics(settings.kafka))
    try:
        asyncio.run(produce_paced(settings.kafka.bootstrap_servers, topic_names(settings.kafka).items, catalog, None))
        result = asyncio.run(
            run_freshness(
                settings, warm=events[:warm_events], paced=events[warm_events:], rate=rate, users=active, logs=LOGS
            )
        )
    finally:
        asyncio.run(delete_topics(settings.kafka, [s.name for s in topic_specs(settings.kafka)]))
    result.update({"benchmark": "freshness", "target_rate": rate, "model": train, "active_users": len(active)})
    _report("freshness", result, json_out)


def register(bench: typer.Typer) -> None:
    """Add the streaming benchmarks to the ``bench`` group."""
    bench.command("ingest")(ingest)
    bench.command("serve")(serve)
    bench.command("freshness")(freshness)
