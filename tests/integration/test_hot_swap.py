"""A new champion is swapped in while requests flow: no request fails, times out or goes unanswered."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

from agents.runtime import build_store
from state.registry import FileRegistry
from streams.bench.harness import WorkerProcess, simulated_lines, user_ids, wait_until_serving
from streams.bench.ingest import produce_paced, wait_handled
from streams.client import RecClient
from streams.demo import train_models
from streams.errors import RequestTimeoutError
from streams.settings import Settings
from streams.topics import topic_names
from tests.integration.conftest import LOGS, drop_topics, fresh_settings


async def load_with_swap(settings: Settings, registry: FileRegistry, users: list[str]) -> list[str | None]:
    """Ask at ~50 requests/s for 8 s and promote v0002 after 3 s; the model version of each answer."""
    versions: list[str | None] = []
    async with RecClient(settings) as client:
        await wait_until_serving(client, None)

        async def one(user: str) -> None:
            try:
                resp = await client.recommend(user, 5, deadline_ms=1000)
            except RequestTimeoutError:
                versions.append(None)
                return
            versions.append(resp.model_version if resp.error is None else f"error:{resp.error.code}")

        tasks = []
        start = time.monotonic()
        for i in range(400):
            await asyncio.sleep(max(0.0, start + i / 50 - time.monotonic()))
            if i == 150:
                registry.promote("v0002", force=True)
            tasks.append(asyncio.create_task(one(users[i % len(users)])))
        await asyncio.gather(*tasks)
    return versions


def test_promoting_a_version_swaps_it_in_without_failing_a_request(base_settings: Settings, tmp_path: Path) -> None:
    settings = fresh_settings(base_settings, "hot-swap")
    settings = settings.model_copy(
        update={
            "models": settings.models.model_copy(update={"registry_dir": tmp_path / "registry", "poll_interval_s": 0.5})
        }
    )
    lines, catalog = simulated_lines(8_000, seed=9, n_users=300, n_items=400, start=time.time() - 3600)
    (tmp_path / "events.jsonl").write_bytes(b"\n".join(lines) + b"\n")
    (tmp_path / "catalog.jsonl").write_bytes(b"\n".join(catalog) + b"\n")
    assert train_models(tmp_path, tmp_path / "registry", "tiny") == "v0001"
    assert train_models(tmp_path, tmp_path / "registry", "tiny") == "v0002"
    registry = FileRegistry(tmp_path / "registry")
    registry.promote("v0001", force=True)
    names = topic_names(settings.kafka)
    try:
        with WorkerProcess(settings, LOGS / f"{settings.worker.app_id}.log") as worker:
            asyncio.run(produce_paced(settings.kafka.bootstrap_servers, names.items, catalog, None))
            asyncio.run(produce_paced(settings.kafka.bootstrap_servers, names.events, lines, None))
            asyncio.run(_handled(settings, len(lines), worker))
            users = user_ids(lines[:2000])
            versions = asyncio.run(load_with_swap(settings, registry, users))
    finally:
        drop_topics(settings)
    assert len(versions) == 400
    assert None not in versions and not any(v and v.startswith("error") for v in versions)
    assert versions[0] == "v0001" and versions[-1] == "v0002"
    first_new = versions.index("v0002")
    assert set(versions[first_new:]) == {"v0002"}  # once swapped, never back


async def _handled(settings: Settings, n: int, worker: WorkerProcess) -> None:
    store = build_store(settings)
    try:
        await wait_handled(store, topic_names(settings.kafka).events, n, worker, timeout_s=120)
    finally:
        await store.close()
