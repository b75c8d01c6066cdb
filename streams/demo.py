"""``streamrec demo``: simulate a shop, train models on the spot, stream events, ask for recommendations."""

from __future__ import annotations

import asyncio
import tempfile
import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Annotated

import orjson
import typer
from rich.console import Console

from agents.runtime import build_store
from streams.admin import drop_run_topics, ensure_topics
from streams.bench.harness import WorkerProcess, wait_until_serving
from streams.bench.ingest import wait_handled
from streams.cli import print_response
from streams.client import RecClient
from streams.produce import produce_lines
from streams.settings import Settings
from streams.topics import topic_names

console = Console()
RUN = Path(".run/demo")


def train_models(data: Path, registry: Path, config: str) -> str:
    """Train the two-tower model and ranker on the simulated log; publish and promote the version."""
    from models.pipeline import build_version
    from state.registry import FileRegistry
    from streams.cli_models import _bars

    reg = FileRegistry(registry)
    with tempfile.TemporaryDirectory() as tmp, _bars() as bars:
        metrics, window, cfg = build_version("sim", data, Path(tmp), config=config, seed=0, progress=bars)
        manifest = reg.publish(
            Path(tmp),
            split=f"{window['dataset']}/{window['protocol']}",
            metrics=metrics,
            data_window=window,
            config=cfg,
        )
    reg.promote(manifest.version, force=True)
    shown = ", ".join(
        f"{k}={v:.3f}" for k, v in metrics.items() if isinstance(v, float) and k[:3] in ("ndc", "hr@", "auc")
    )
    console.print(f"model [bold]{manifest.version}[/] trained in {cfg['train_seconds']} s: {shown}")
    return manifest.version


def demo(
    users: int = 3_000,
    items: int = 1_500,
    events: int = 60_000,
    config: Annotated[str, typer.Option(help="training config: tiny | default")] = "tiny",
) -> None:
    """The main job on the embedded default: everything from an empty broker to printed recommendations."""
    from streams.bench.harness import isolated, simulated_lines
    from streams.settings import load_settings

    t0 = time.perf_counter()
    RUN.mkdir(parents=True, exist_ok=True)
    with console.status(f"simulating a shop: {users:,} users, {items:,} items, {events:,} events"):
        lines, catalog = simulated_lines(events, seed=7, n_users=users, n_items=items, start=time.time() - 3 * 3600)
    (RUN / "events.jsonl").write_bytes(b"\n".join(lines) + b"\n")
    (RUN / "catalog.jsonl").write_bytes(b"\n".join(catalog) + b"\n")
    base = load_settings()
    settings = isolated(base, "demo")
    settings = settings.model_copy(update={"models": base.models.model_copy(update={"registry_dir": RUN / "registry"})})
    train_models(RUN, settings.models.registry_dir, config)
    asyncio.run(stream_and_ask(settings, lines, catalog))
    console.print(f"[green]demo finished in {time.perf_counter() - t0:.0f} s[/]")


def busiest_users(lines: list[bytes], n: int) -> list[str]:
    """The ``n`` users with the most events (they make the most telling examples)."""
    counts = Counter(orjson.loads(line)["user_id"] for line in lines)
    return [u for u, _ in counts.most_common(n)]


def fresh_clicks(user: str, catalog: list[bytes], seen: set[str], n: int = 4) -> list[bytes]:
    """``n`` clicks, now, by ``user`` on items of one category the user has not touched."""
    items = [orjson.loads(c) for c in catalog]
    category = items[len(items) // 2]["category"]
    picks = [it["item_id"] for it in items if it["category"] == category and it["item_id"] not in seen][:n]
    now = datetime.now(UTC)
    return [
        orjson.dumps(
            {
                "event_id": f"demo-{user}-{i}",
                "type": "click",
                "user_id": user,
                "item_id": item,
                "ts": (now - timedelta(seconds=n - i)).isoformat(),
            }
        )
        for i, item in enumerate(picks)
    ]


async def stream_and_ask(settings: Settings, lines: list[bytes], catalog: list[bytes]) -> None:
    """Start a worker on fresh topics, stream the shop into it, and ask for recommendations over Kafka."""
    names = topic_names(settings.kafka)
    servers = settings.kafka.bootstrap_servers
    await ensure_topics(settings.kafka)
    store = build_store(settings)
    worker = WorkerProcess(settings, RUN / "worker.log").start()
    try:
        with console.status("streaming the catalog and events through Kafka into the worker"):
            await produce_lines(servers, names.items, catalog)
            t = time.perf_counter()
            await produce_lines(servers, names.events, lines)
            await wait_handled(store, names.events, len(lines), worker, timeout_s=300)
        console.print(
            f"worker handled {len(lines):,} events ({len(lines) / (time.perf_counter() - t):,.0f}/s incl. produce)"
        )
        async with RecClient(settings) as client:
            await wait_until_serving(client, worker)
            users = busiest_users(lines, 2)
            for user in [*users, "someone-new"]:
                print_response(await client.recommend(user, 8), title=f"recommendations for {user}")
            clicks = fresh_clicks(
                users[0], catalog, {it.item_id for it in (await client.recommend(users[0], 50)).items}
            )
            await produce_lines(servers, names.events, clicks)
            await asyncio.sleep(1.5)
            console.print(f"{users[0]} just clicked {len(clicks)} items of one category; asking again:")
            print_response(await client.recommend(users[0], 8), title=f"recommendations for {users[0]}, seconds later")
    finally:
        worker.stop()
        await store.close()
        await drop_run_topics(settings)
