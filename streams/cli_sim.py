"""``streamrec simulate`` (write or stream a synthetic shop) and ``streamrec demo`` (the whole loop, end to end)."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console

console = Console()


def simulate(
    out: Annotated[Path, typer.Option(help="directory for events.jsonl and catalog.jsonl")] = Path(".run/sim"),
    users: int = 5_000,
    items: int = 2_000,
    events: int = 100_000,
    seed: int = 7,
    produce: Annotated[bool, typer.Option(help="stream to Kafka (catalog first) instead of writing files")] = False,
    rate: Annotated[Optional[float], typer.Option(help="events/s when producing (flat out if unset)")] = None,
    hours_ago: Annotated[float, typer.Option(help="simulated time starts this long before now")] = 2.0,
) -> None:
    """Generate a seeded, reproducible shop: catalog plus user sessions (view, click, cart, purchase, impressions)."""
    from streams.bench.harness import simulated_lines

    start = time.time() - hours_ago * 3600
    with console.status(f"simulating {events:,} events for {users:,} users over {items:,} items"):
        lines, catalog = simulated_lines(events, seed=seed, n_users=users, n_items=items, start=start)
    if not produce:
        out.mkdir(parents=True, exist_ok=True)
        (out / "events.jsonl").write_bytes(b"\n".join(lines) + b"\n")
        (out / "catalog.jsonl").write_bytes(b"\n".join(catalog) + b"\n")
        console.print(f"wrote {len(lines):,} events and {len(catalog):,} items to {out}/")
        return
    from streams.produce import produce_lines
    from streams.settings import load_settings
    from streams.topics import topic_names

    settings = load_settings()
    names = topic_names(settings.kafka)
    n_items = asyncio.run(produce_lines(settings.kafka.bootstrap_servers, names.items, catalog))
    n_events = asyncio.run(produce_lines(settings.kafka.bootstrap_servers, names.events, lines, rate=rate))
    console.print(f"produced {n_items:,} items to {names.items} and {n_events:,} events to {names.events}")


def register(app: typer.Typer) -> None:
    """Add the simulation commands to ``app``."""
    from streams.demo import demo

    app.command("simulate")(simulate)
    app.command("demo")(demo)
