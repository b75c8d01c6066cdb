"""Operations commands: `streamrec lag` (table, --watch, --json, thresholds) and `streamrec lag-exporter`."""

from __future__ import annotations

import asyncio
import dataclasses
import signal
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Annotated, Optional

import orjson
import typer
from rich.console import Console
from rich.live import Live
from rich.table import Table

from agents.experiments import ExperimentReport
from streams.lag import LagSnapshot, PartitionLag, breaches
from streams.settings import KafkaSettings, LagSettings, Settings, load_settings

BREACH_EXIT = 3
console = Console()

GroupOpt = Annotated[Optional[list[str]], typer.Option("--group", "-g", help="consumer group (repeat); all if unset")]


def lag_settings(settings: Settings) -> LagSettings:
    """The ``lag`` section of the settings tree."""
    return settings.lag


def take_snapshot(kafka: KafkaSettings, groups: Sequence[str], timeout_s: float) -> LagSnapshot:
    """One look at the broker (connects, reads, disconnects)."""
    from streams.lag import LagMonitor

    async def once() -> LagSnapshot:
        async with LagMonitor(kafka, timeout_s=timeout_s) as monitor:
            return await monitor.snapshot(groups)

    return asyncio.run(once())


def _fmt_seconds(s: float | None) -> str:
    return "?" if s is None else f"{s:,.1f}"


def lag_table(snap: LagSnapshot, over: Sequence[PartitionLag] = ()) -> Table:
    """The rich table of a snapshot; rows over a threshold in red."""
    red = {(r.group, r.topic, r.partition) for r in over}
    table = Table(title=f"consumer lag at {time.strftime('%H:%M:%S', time.localtime(snap.taken_at))}")
    for name in ("group", "topic"):
        table.add_column(name, overflow="fold")
    for name in ("partition", "committed", "end", "lag", "lag s"):
        table.add_column(name, justify="right")
    for r in snap.rows:
        style = "red" if (r.group, r.topic, r.partition) in red else None
        committed = "-" if r.committed is None else f"{r.committed:,}"
        table.add_row(
            r.group,
            r.topic,
            str(r.partition),
            committed,
            f"{r.end:,}",
            f"{r.lag_messages:,}",
            _fmt_seconds(r.lag_seconds),
            style=style,
        )
    total = sum(r.lag_messages for r in snap.rows)
    worst = max((r.lag_seconds for r in snap.rows if r.lag_seconds is not None), default=0.0)
    table.caption = f"{len(snap.rows)} partitions, {total:,} messages behind, oldest {worst:,.1f} s; {len(red)} over"
    return table


def _json_line(snap: LagSnapshot, over: Sequence[PartitionLag]) -> str:
    doc = {"taken_at": snap.taken_at, "rows": snap.as_dicts(), "breaches": len(over)}
    return orjson.dumps(doc).decode()


def lag(
    group: GroupOpt = None,
    watch: Annotated[bool, typer.Option("--watch", "-w", help="refresh until interrupted")] = False,
    interval: Annotated[float, typer.Option(min=0.1, help="seconds between refreshes with --watch")] = 2.0,
    count: Annotated[int, typer.Option(min=0, help="with --watch, stop after this many refreshes (0: never)")] = 0,
    as_json: Annotated[bool, typer.Option("--json", help="JSON (one line per refresh) instead of a table")] = False,
    max_lag_messages: Annotated[Optional[int], typer.Option(min=0, help="breach above this many messages")] = None,
    max_lag_seconds: Annotated[Optional[float], typer.Option(min=0, help="breach above this age in seconds")] = None,
) -> None:
    """Consumer lag per group, topic and partition; exits with code 3 when a threshold is breached."""
    settings = load_settings()
    cfg = lag_settings(settings)
    groups = group or list(cfg.groups)
    shown = 0
    over: list[PartitionLag] = []
    live = Live(console=console, auto_refresh=False) if watch and not as_json else None
    try:
        if live is not None:
            live.start()
        while True:
            snap = take_snapshot(settings.kafka, groups, cfg.timeout_s)
            over = breaches(snap.rows, max_lag_messages, max_lag_seconds)
            if as_json:
                typer.echo(_json_line(snap, over))
            elif live is not None:
                live.update(lag_table(snap, over), refresh=True)
            else:
                console.print(lag_table(snap, over))
            shown += 1
            if not watch or shown == count:
                break
            time.sleep(interval)
    except KeyboardInterrupt:
        pass  # --watch ends on Ctrl-C; the exit code reflects the last refresh
    finally:
        if live is not None:
            live.stop()
    if over:
        raise typer.Exit(BREACH_EXIT)


def lag_exporter(
    port: Annotated[Optional[int], typer.Option(help="HTTP port for /metrics (defaults to the lag settings)")] = None,
    host: Annotated[Optional[str], typer.Option(help="address to bind (defaults to the lag settings)")] = None,
    group: GroupOpt = None,
    interval: Annotated[Optional[float], typer.Option(min=0.1, help="seconds between broker polls")] = None,
) -> None:
    """Serve consumer-lag metrics on /metrics, polling the broker, until interrupted (Ctrl-C or SIGTERM)."""
    settings = load_settings()
    cfg = lag_settings(settings)
    asyncio.run(
        _export(
            settings.kafka,
            cfg,
            port if port is not None else cfg.port,
            host or cfg.host,
            group or list(cfg.groups),
            interval or cfg.interval_s,
        )
    )


async def _export(
    kafka: KafkaSettings, cfg: LagSettings, port: int, host: str, groups: list[str], interval_s: float
) -> None:
    from prometheus_client import CollectorRegistry

    from streams.lag import LagCollector, LagMonitor, run_exporter
    from streams.metrics import serve_metrics

    registry = CollectorRegistry()
    collector = LagCollector(registry)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)

    def report(snap: LagSnapshot | None) -> None:
        if snap is None:
            console.print("[yellow]poll failed; serving the previous numbers with streamrec_lag_exporter_up 0[/]")

    with serve_metrics(registry, port, host) as server:
        console.print(f"lag exporter on http://{host}:{server.port}/metrics, groups: {', '.join(groups) or 'all'}")
        async with LagMonitor(kafka, timeout_s=cfg.timeout_s) as monitor:
            await run_exporter(monitor, collector, groups, interval_s=interval_s, stop=stop, on_poll=report)


def register(app: typer.Typer) -> None:
    """Add ``lag`` and ``lag-exporter`` to the main CLI."""
    app.command("lag")(lag)
    app.command("lag-exporter")(lag_exporter)
    experiment = typer.Typer(help="A/B experiments.", no_args_is_help=True)
    experiment.command("report")(experiment_report_cmd)
    app.add_typer(experiment, name="experiment")
    app.command("closed-loop")(closed_loop_cmd)


async def read_all(kafka: KafkaSettings, topic: str) -> list[bytes]:
    """Every record value of ``topic`` up to its current end (a bounded read, no consumer group)."""
    from aiokafka import AIOKafkaConsumer, TopicPartition

    from streams.admin import partitions_of

    tps = [TopicPartition(topic, p) for p in await partitions_of(kafka, topic)]
    consumer = AIOKafkaConsumer(
        bootstrap_servers=kafka.bootstrap_servers, enable_auto_commit=False, auto_offset_reset="earliest"
    )
    await consumer.start()
    try:
        consumer.assign(tps)
        starts, ends = await consumer.beginning_offsets(tps), await consumer.end_offsets(tps)
        await consumer.seek_to_beginning(*tps)
        want = sum(ends[tp] - starts[tp] for tp in tps)
        out: list[bytes] = []
        deadline = time.monotonic() + 60.0
        while len(out) < want and time.monotonic() < deadline:
            for recs in (await consumer.getmany(timeout_ms=500, max_records=10_000)).values():
                out.extend(r.value for r in recs if r.value is not None)
        return out
    finally:
        await consumer.stop()


async def report_from_topics(kafka: KafkaSettings, confidence: float = 0.95) -> ExperimentReport:
    """The experiment report over everything on the impressions and events topics now."""
    from agents.experiments import experiment_report
    from streams.records import Event, Impression
    from streams.topics import topic_names

    names = topic_names(kafka)
    impressions = [Impression.model_validate_json(v) for v in await read_all(kafka, names.impressions)]
    events = []
    for raw in await read_all(kafka, names.events):
        try:
            events.append(Event.model_validate_json(raw))
        except ValueError:
            continue  # malformed events are the dead-letter topic's business, not the report's
    return experiment_report(impressions, events, confidence=confidence)


def experiment_report_cmd(
    json_out: Annotated[bool, typer.Option("--json", help="print JSON instead of a table")] = False,
    confidence: float = 0.95,
) -> None:
    """Per-variant CTR, conversion and revenue per request (with intervals) from the impressions and events topics."""
    report = asyncio.run(report_from_topics(load_settings().kafka, confidence))
    if json_out:
        sys.stdout.write(orjson.dumps(dataclasses.asdict(report), option=orjson.OPT_INDENT_2).decode() + "\n")
        return
    table = Table(
        "variant",
        "requests",
        "CTR",
        "conversion",
        "revenue/request",
        title=f"experiment report ({confidence:.0%} intervals)",
    )
    for row in report.variants:
        cells = [
            f"{e.value:.4f} [{e.low:.4f}, {e.high:.4f}]" for e in (row.ctr, row.conversion, row.revenue_per_request)
        ]
        table.add_row(row.variant, str(row.requests), *cells)
    table.caption = f"{report.unattributed_events} events named no logged list"
    console.print(table)


def closed_loop_cmd(
    json_out: Annotated[Optional[Path], typer.Option("--json", help="where to write the results")] = None,
    users: int = 600,
    items: int = 800,
    warm_events: Annotated[int, typer.Option(help="simulated log the models train on and the worker ingests")] = 30_000,
    requests: Annotated[int, typer.Option(help="lists asked for by simulated users during the loop")] = 3_000,
    rps: Annotated[float, typer.Option(help="requests per second, at most")] = 60.0,
    concurrency: Annotated[int, typer.Option(min=1, help="simulated users waiting for a list at once")] = 8,
    seed: int = 3,
    trained: Annotated[str, typer.Option(help="training config of the better model")] = "tiny",
    weak: Annotated[str, typer.Option(help="training config of the weak model")] = "untrained",
    value_formula: Annotated[str, typer.Option(help="click | purchase | expected_revenue | weighted")] = "click",
) -> None:
    """A/B test a trained against an untrained model with simulated users reacting to the live engine."""
    from typing import cast, get_args

    from streams.bench.harness import write_json
    from streams.cli_models import _bars
    from streams.closed_loop import LoopConfig, run_closed_loop
    from streams.settings import ValueFormula

    formulas = get_args(ValueFormula)
    if value_formula not in formulas:
        raise typer.BadParameter(f"unknown value formula {value_formula!r}; valid: {', '.join(formulas)}")
    cfg = LoopConfig(
        users,
        items,
        warm_events,
        requests,
        rps,
        seed=seed,
        trained=trained,
        weak=weak,
        value_formula=cast("ValueFormula", value_formula),
    )
    with _bars() as bars:
        result = asyncio.run(run_closed_loop(load_settings(), cfg, logs=Path(".run/closed-loop"), progress=bars))
    write_json(json_out, result)
    table = Table("variant", "model", "requests", "CTR", "conversion", "revenue/request", title="closed loop")
    for name, row in result["variants"].items():
        cells = [
            f"{row[m]['value']:.4f} [{row[m]['low']:.4f}, {row[m]['high']:.4f}]"
            for m in ("ctr", "conversion", "revenue_per_request")
        ]
        table.add_row(name, row["model_version"], str(row["requests"]), *cells)
    sep = "intervals separate" if result["ctr_intervals_separate"] else "intervals overlap"
    table.caption = f"winner by CTR: {result['winner_by_ctr']} ({sep}); {result['seconds']} s"
    console.print(table)
