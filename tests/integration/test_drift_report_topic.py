"""``streamrec drift report`` over a real impressions topic: a worker serving a trained version logs what it
scored, the report reads it back and measures it against the version's training reference; the worker's own
window (its snapshot) gives the same columns."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import orjson
import pytest
from typer.testing import CliRunner

from agents.runtime import build_store
from streams.bench.harness import WorkerProcess, simulated_lines, wait_until_serving
from streams.bench.ingest import produce_paced, wait_handled
from streams.bench.serve import with_trained_model
from streams.cli import app as cli_app
from streams.cli import bench_app
from streams.cli_extras import register
from streams.client import RecClient
from streams.settings import Settings, child_env
from streams.topics import topic_names
from tests.integration.conftest import LOGS, drop_topics, fresh_settings

N_USERS, REQUESTS, K = 150, 60, 8


def test_drift_report_over_the_impressions_topic(
    base_settings: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = fresh_settings(base_settings, "drift-report")
    lines, catalog = simulated_lines(4_000, seed=3, n_users=N_USERS, n_items=300, start=time.time() - 3600)
    settings = with_trained_model(settings, lines, catalog, "tiny", tmp_path / "model")
    drift = {"interval_s": 1.0, "min_samples": 1, "snapshot_dir": tmp_path / "snap"}
    settings = settings.model_copy(update={"drift": settings.drift.model_copy(update=drift)})
    names = topic_names(settings.kafka)
    try:
        with WorkerProcess(settings, LOGS / f"{settings.worker.app_id}.log") as worker:
            asyncio.run(produce_paced(settings.kafka.bootstrap_servers, names.items, catalog, None))
            asyncio.run(produce_paced(settings.kafka.bootstrap_servers, names.events, lines, None))
            asyncio.run(_handled(settings, len(lines), worker))
            scored = asyncio.run(_serve(settings))
            time.sleep(3.0)  # a drift refresh writes the worker's window
        for key, value in child_env(settings).items():
            if key.startswith("STREAMREC_"):
                monkeypatch.setenv(key, value)
        register(cli_app, bench_app)
        out, png = tmp_path / "drift.json", tmp_path / "drift.png"
        result = CliRunner().invoke(cli_app, ["drift", "report", "--json", str(out), "--plot", str(png)])
        snap = next((tmp_path / "snap").glob("*.json"))
        from_snap = CliRunner().invoke(cli_app, ["drift", "report", "--from", f"snapshot:{snap}"])
    finally:
        drop_topics(settings)
    assert result.exit_code == 0, result.output
    assert from_snap.exit_code == 0, from_snap.output
    report = orjson.loads(out.read_bytes())
    assert report["version"] == "v0001" and report["source"] == "impressions"
    assert report["rows"] >= scored > 0  # every served, scored item (plus the readiness probes)
    features = report["features"]
    assert {"p_click", "p_purchase", "value", "i_ctr", "x_tt_dot", "u_lifetime_events"} <= set(features)
    assert all(f["psi"] >= 0.0 and f["level"] in {"stable", "moderate", "significant"} for f in features.values())
    assert 0.0 < features["p_click"]["live_mean"] < 1.0
    assert png.read_bytes()[:4] == b"\x89PNG"


async def _handled(settings: Settings, n: int, worker: WorkerProcess) -> None:
    store = build_store(settings)
    try:
        await wait_handled(store, topic_names(settings.kafka).events, n, worker, timeout_s=120)
    finally:
        await store.close()


async def _serve(settings: Settings) -> int:
    """Ask for lists for REQUESTS users; the number of items served with ranker scores."""
    scored = 0
    async with RecClient(settings) as client:
        await wait_until_serving(client, None)
        for i in range(REQUESTS):
            resp = await client.recommend(f"u{(i * 37) % N_USERS}", K, deadline_ms=2000)
            scored += sum(it.p_click is not None for it in resp.items)
    return scored
