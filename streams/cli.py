"""The ``streamrec`` command line: worker, topics, produce, recommend, simulate, bench, models."""

from __future__ import annotations

import asyncio
import gc
import logging
import sys
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console
from rich.table import Table

from streams.errors import StreamrecError
from streams.records import RecommendResponse
from streams.settings import Settings, load_settings

app = typer.Typer(
    help="streamrec: Kafka-native real-time recommendations.", no_args_is_help=True, pretty_exceptions_enable=False
)
topics_app = typer.Typer(help="Manage streamrec's Kafka topics.", no_args_is_help=True)
bench_app = typer.Typer(help="Benchmarks that write JSON.", no_args_is_help=True)
app.add_typer(topics_app, name="topics")
app.add_typer(bench_app, name="bench")
console = Console()
YOUNG_GC_THRESHOLD = 20_000  # allocations between collections of the youngest generation (CPython: 700)


def _settings() -> Settings:
    return load_settings()


@app.command()
def worker() -> None:
    """Run a Faust worker: events, items and serving agents (creates missing topics first)."""
    import faust

    from streams import gc_watch
    from streams.admin import ensure_topics
    from streams.app import create_app

    settings = _settings()
    asyncio.run(ensure_topics(settings.kafka))
    faust_app = create_app(settings)
    # Start-up objects (model, catalog, code) never die: keep them out of the collector's generations,
    # which otherwise rescans them and shows up as serving-latency spikes.
    gc.collect()
    gc.freeze()
    # A request allocates thousands of short-lived tuples (candidates, scored pairs) that reference counting
    # frees; collecting the youngest generation every 700 allocations only rescans them (~5 % of a request).
    gc.set_threshold(YOUNG_GC_THRESHOLD, 10, 10)
    gc_watch.install()
    faust.Worker(faust_app, loglevel=settings.worker.log_level.upper(), quiet=True).execute_from_commandline()


@topics_app.command("create")
def topics_create() -> None:
    """Create every streamrec topic that does not exist yet."""
    from streams.admin import ensure_topics

    created = asyncio.run(ensure_topics(_settings().kafka))
    console.print(f"created: {', '.join(created) or 'nothing (all exist)'}")


@topics_app.command("list")
def topics_list() -> None:
    """Show the topic specs streamrec uses (names include the configured prefix)."""
    from streams.topics import topic_specs

    table = Table("topic", "partitions", "config")
    for spec in topic_specs(_settings().kafka):
        table.add_row(spec.name, str(spec.partitions), ", ".join(f"{k}={v}" for k, v in spec.config))
    console.print(table)


@app.command()
def produce(
    path: Annotated[Optional[Path], typer.Argument(help="JSONL file; stdin when omitted")] = None,
    topic: Annotated[str, typer.Option(help="events | items | rec-requests")] = "events",
    rate: Annotated[Optional[float], typer.Option(help="messages per second (as fast as possible if unset)")] = None,
) -> None:
    """Produce JSON lines (events or item updates) to Kafka, keyed by user_id / item_id."""
    from streams.produce import produce_lines
    from streams.topics import topic_names

    settings = _settings()
    names = topic_names(settings.kafka)
    target = {"events": names.events, "items": names.items, "rec-requests": names.rec_requests}.get(topic)
    if target is None:
        raise typer.BadParameter(f"unknown topic {topic!r}; choose events, items or rec-requests")
    source = path.open("rb") if path else sys.stdin.buffer
    with source:
        n = asyncio.run(produce_lines(settings.kafka.bootstrap_servers, target, source, rate=rate))
    console.print(f"produced {n} messages to {target}")


def print_response(resp: RecommendResponse, title: str | None = None) -> None:
    """Render one response as a table."""
    flag = " [yellow](fallback)[/]" if resp.fallback else ""
    table = Table(title=title or f"user {resp.user_id}: {resp.model_version}{flag}, {resp.latency_ms:.1f} ms")
    for col in ("#", "item", "score", "source", "reason", "p_click", "p_purchase", "value"):
        table.add_column(col)
    for it in resp.items:
        opt = ["" if v is None else f"{v:.4f}" for v in (it.p_click, it.p_purchase, it.value)]
        table.add_row(str(it.position + 1), it.item_id, f"{it.score:.4f}", it.source, it.reason, *opt)
    if resp.error is not None:
        table.caption = f"error {resp.error.code}: {resp.error.message}"
    console.print(table)


@app.command()
def recommend(
    user: Annotated[str, typer.Option(help="user id")],
    k: int = 10,
    exclude: Annotated[str, typer.Option(help="comma-separated item ids")] = "",
    deadline_ms: Optional[float] = None,
    json_out: Annotated[bool, typer.Option("--json", help="print the raw response JSON")] = False,
) -> None:
    """Ask the running workers for recommendations over Kafka and print them."""
    from streams.client import RecClient

    async def ask() -> RecommendResponse:
        async with RecClient(_settings()) as client:
            return await client.recommend(
                user, k, exclude=[x for x in exclude.split(",") if x], deadline_ms=deadline_ms
            )

    resp = asyncio.run(ask())
    if json_out:
        sys.stdout.write(resp.model_dump_json() + "\n")
    else:
        print_response(resp)


def main() -> None:
    """Entry point of the ``streamrec`` console script."""
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    from streams import cli_extras

    cli_extras.register(app, bench_app)
    try:
        app()
    except StreamrecError as exc:
        console.print(f"[red]error:[/] {exc}")
        raise SystemExit(1) from exc


if __name__ == "__main__":
    main()
