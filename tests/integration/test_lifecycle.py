"""Model lifecycle over the real broker: shadow records from a challenger, and a promote on the control topic
swapping the worker's model far sooner than its registry poll (set to 5 minutes here)."""

from __future__ import annotations

import asyncio
import shutil
import statistics
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from agents.runtime import build_store
from state.registry import FileRegistry
from streams.bench.harness import WorkerProcess, simulated_lines, user_ids, wait_until_serving
from streams.bench.ingest import produce_paced, wait_handled
from streams.client import RecClient
from streams.demo import train_models
from streams.model_updates import model_update, publish_update
from streams.records import ShadowRecord
from streams.settings import Settings
from streams.topics import topic_names
from tests.integration.conftest import LOGS, drop_topics, fresh_settings, read_topic

POLL_S = 300.0


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[bytes], list[bytes]]:
    """A registry with a tiny (untrained: loadable is all it takes) v0001, its copies v0002 and v0003, and the shop."""
    work = tmp_path_factory.mktemp("lifecycle")
    lines, catalog = simulated_lines(6_000, seed=11, n_users=200, n_items=300, start=time.time() - 3600)
    (work / "events.jsonl").write_bytes(b"\n".join(lines) + b"\n")
    (work / "catalog.jsonl").write_bytes(b"\n".join(catalog) + b"\n")
    registry = work / "registry"
    assert train_models(work, registry, "untrained") == "v0001"
    reg = FileRegistry(registry)
    for _ in range(2):
        m = reg.get("v0001")
        reg.publish(registry / "versions" / "v0001", split=m.split, metrics=m.metrics, data_window=m.data_window)
    reg.promote("v0001", force=True)
    return registry, lines, catalog


@pytest.fixture(scope="module")
def worker(
    base_settings: Settings, world: tuple[Path, list[bytes], list[bytes]]
) -> Iterator[tuple[Settings, WorkerProcess, list[str]]]:
    """One worker serving v0001 with v0002 in shadow, polling the registry only every five minutes."""
    registry, lines, catalog = world
    settings = fresh_settings(base_settings, "lifecycle")
    models = {"registry_dir": registry, "poll_interval_s": POLL_S, "shadow_version": "v0002", "shadow_k": 5}
    settings = settings.model_copy(update={"models": settings.models.model_copy(update=models)})
    names = topic_names(settings.kafka)
    proc = WorkerProcess(settings, LOGS / f"{settings.worker.app_id}.log").start()
    try:
        asyncio.run(produce_paced(settings.kafka.bootstrap_servers, names.items, catalog, None))
        asyncio.run(produce_paced(settings.kafka.bootstrap_servers, names.events, lines, None))
        asyncio.run(_handled(settings, len(lines), proc))
        yield settings, proc, user_ids(lines)
    finally:
        proc.stop()
        drop_topics(settings)


async def _handled(settings: Settings, n: int, proc: WorkerProcess) -> None:
    store = build_store(settings)
    try:
        await wait_handled(store, topic_names(settings.kafka).events, n, proc, timeout_s=180)
    finally:
        await store.close()
    async with RecClient(settings) as client:
        await wait_until_serving(client, proc)


async def ask_all(settings: Settings, users: list[str]) -> list[str]:
    async with RecClient(settings) as client:
        return [(await client.recommend(u, 5, deadline_ms=2000)).model_version for u in users]


def test_a_challenger_in_shadow_logs_its_differences(worker: tuple[Settings, WorkerProcess, list[str]]) -> None:
    settings, _, users = worker
    versions = asyncio.run(ask_all(settings, users[:40]))
    assert set(versions) == {"v0001"}  # the challenger is never served
    raw = asyncio.run(read_topic(settings, topic_names(settings.kafka).shadow, 41, timeout_s=20))
    records = [r for r in (ShadowRecord.model_validate_json(v) for _, v in raw) if r.user_id != "__probe__"]
    assert len(records) == 40
    assert {(r.champion_version, r.challenger_version, r.k) for r in records} == {("v0001", "v0002", 5)}
    assert {r.user_id for r in records} == set(users[:40])
    assert all(len(r.champion_top) == len(r.challenger_top) == len(r.score_deltas) == 5 for r in records)
    # v0002 is v0001 published again: with the same weights both must rank alike (the session vector is
    # recomputed by the challenger, so tiny float differences are allowed).
    assert statistics.mean(r.overlap_at_k for r in records) >= 0.95
    rhos = [r.rank_correlation for r in records if r.rank_correlation is not None]
    assert len(rhos) >= 35 and statistics.median(rhos) > 0.99
    assert statistics.median(r.mean_abs_delta for r in records) < 1e-3


def _promote(settings: Settings, registry: Path, version: str, monkeypatch: pytest.MonkeyPatch) -> float:
    """``streamrec models promote VERSION --force`` in process; the time it returned."""
    from streams.cli_models import register

    monkeypatch.setenv("STREAMREC_KAFKA__BOOTSTRAP_SERVERS", settings.kafka.bootstrap_servers)
    monkeypatch.setenv("STREAMREC_KAFKA__TOPIC_PREFIX", settings.kafka.topic_prefix)
    app = typer.Typer()
    register(app)
    result = CliRunner().invoke(app, ["models", "promote", version, "--force", "--registry", str(registry)])
    assert result.exit_code == 0, result.output
    assert "announced promote" in result.output
    return time.monotonic()


async def first_answer_from(settings: Settings, user: str, version: str, within_s: float) -> float | None:
    """Seconds until an answer for ``user`` names ``version`` (None if none did within ``within_s``)."""
    start = time.monotonic()
    async with RecClient(settings) as client:
        while time.monotonic() - start < within_s:
            if (await client.recommend(user, 5, deadline_ms=2000)).model_version == version:
                return time.monotonic() - start
            await asyncio.sleep(0.1)
    return None


def test_a_promote_on_the_control_topic_swaps_within_seconds_and_a_broken_one_is_refused(
    worker: tuple[Settings, WorkerProcess, list[str]],
    world: tuple[Path, list[bytes], list[bytes]],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    settings, proc, users = worker
    registry = world[0]
    assert asyncio.run(ask_all(settings, users[:3])) == ["v0001"] * 3
    _promote(settings, registry, "v0002", monkeypatch)
    waited = asyncio.run(first_answer_from(settings, users[0], "v0002", within_s=10.0))
    assert waited is not None and waited < 10.0 < POLL_S
    assert set(asyncio.run(ask_all(settings, users[:20]))) == {"v0002"}
    # A version whose files broke after promotion: the worker fails to load it and keeps serving v0002.
    broken = registry / "versions" / "v0003"
    shutil.copy2(broken / "ranker.onnx", broken / "ranker.onnx.bak")
    FileRegistry(registry).promote("v0003", force=True)
    (broken / "ranker.onnx").write_bytes(b"\x00 not onnx")
    update = model_update("v0003", "promote", time.time())
    asyncio.run(publish_update(settings.kafka, update, settings.models.updates_timeout_s))
    try:
        assert asyncio.run(first_answer_from(settings, users[1], "v0003", within_s=4.0)) is None
        assert set(asyncio.run(ask_all(settings, users[:20]))) == {"v0002"} and proc.alive()
    finally:
        shutil.move(broken / "ranker.onnx.bak", broken / "ranker.onnx")
    log = proc.log_path.read_text(encoding="utf-8", errors="replace")
    assert "model v0003 failed to load, still serving v0002" in log
