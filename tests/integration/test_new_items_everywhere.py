"""New items produced to the items topic reach the ANN index of both workers of a group within seconds.

Only one worker consumes each item (the items topic is group-consumed); both must index it.
Each worker logs ``indexed N new items`` when it adds items; the test times those lines.
"""

from __future__ import annotations

import asyncio
import re
import time
from datetime import UTC, datetime
from pathlib import Path

import orjson

from agents.runtime import build_store
from streams.bench.harness import WorkerProcess, simulated_lines
from streams.bench.ingest import produce_paced, wait_handled
from streams.demo import train_models
from streams.settings import Settings
from streams.topics import topic_names
from tests.integration.conftest import LOGS, drop_topics, fresh_settings
from tests.integration.test_two_worker_failover import wait_assignment

INDEXED = re.compile(rb"indexed (\d+) new items")
NEW = [f"brand-new-{k}" for k in range(5)]


def indexed(log: Path, offset: int) -> int:
    """How many new items a worker's log says it indexed after byte ``offset``."""
    return sum(int(m.group(1)) for m in INDEXED.finditer(log.read_bytes()[offset:]))


async def propagate(settings: Settings, catalog: list[bytes], logs: tuple[Path, Path]) -> list[float]:
    names = topic_names(settings.kafka)
    servers = settings.kafka.bootstrap_servers
    await produce_paced(servers, names.items, catalog, None)
    second = settings.model_copy(
        update={"worker": settings.worker.model_copy(update={"data_dir": settings.worker.data_dir / "b"})}
    )
    second.worker.data_dir.mkdir(parents=True, exist_ok=True)  # Faust creates only the last level
    store = build_store(settings)
    workers = [WorkerProcess(settings, logs[0]).start(), WorkerProcess(second, logs[1]).start()]
    try:
        await wait_handled(store, names.items, len(catalog), workers[0], timeout_s=120)
        await wait_assignment(settings, 2)
        await asyncio.sleep(3 * settings.models.catalog_poll_interval_s)  # both have synced the known catalog
        offsets = [log.stat().st_size for log in logs]
        at = datetime.now(UTC).isoformat()
        items = [orjson.dumps({"item_id": i, "category": "c1", "price": 9.5, "created_at": at}) for i in NEW]
        started = time.perf_counter()
        await produce_paced(servers, names.items, items, None)
        seen: list[float | None] = [None, None]
        while None in seen and time.perf_counter() - started < 30:
            for k, log in enumerate(logs):
                if seen[k] is None and indexed(log, offsets[k]) >= len(NEW):
                    seen[k] = time.perf_counter() - started
            await asyncio.sleep(0.05)
        assert all(w.alive() for w in workers)
        assert all(r is not None for r in await store.read_items(NEW))
        return [s if s is not None else float("inf") for s in seen]
    finally:
        for w in workers:
            w.stop()
        await store.close()


def test_new_items_are_indexed_by_every_worker_within_seconds(base_settings: Settings, tmp_path: Path) -> None:
    settings = fresh_settings(base_settings, "new-items")
    settings = settings.model_copy(
        update={"models": settings.models.model_copy(update={"registry_dir": tmp_path / "registry"})}
    )
    lines, catalog = simulated_lines(3_000, seed=11, n_users=100, n_items=150, start=time.time() - 3600)
    (tmp_path / "events.jsonl").write_bytes(b"\n".join(lines) + b"\n")
    (tmp_path / "catalog.jsonl").write_bytes(b"\n".join(catalog) + b"\n")
    assert train_models(tmp_path, tmp_path / "registry", "tiny") == "v0001"
    app = settings.worker.app_id
    try:
        latencies = asyncio.run(propagate(settings, catalog, (LOGS / f"{app}-a.log", LOGS / f"{app}-b.log")))
    finally:
        drop_topics(settings)
    print(f"new item produced -> in the ANN index of worker a, b: {latencies[0]:.2f} s, {latencies[1]:.2f} s")
    assert max(latencies) < 5.0  # one poll interval (1 s) plus the items agent's batch and a store round trip
