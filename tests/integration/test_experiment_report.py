"""The experiment report over the real topics: served lists by variant, and the clicks that followed."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime

import orjson
import pytest
from typer.testing import CliRunner

from agents.runtime import build_store
from streams.bench.harness import WorkerProcess, simulated_lines, wait_until_serving
from streams.bench.ingest import produce_paced, wait_handled
from streams.cli import app as cli_app
from streams.cli import bench_app
from streams.cli_extras import register
from streams.client import RecClient
from streams.settings import Settings, child_env
from streams.topics import topic_names
from tests.integration.conftest import LOGS, drop_topics, fresh_settings

ARMS = [{"name": "control", "share": 0.5}, {"name": "clicks", "share": 0.5, "value_formula": "click"}]


def test_report_splits_traffic_and_attributes_clicks(base_settings: Settings, monkeypatch: pytest.MonkeyPatch) -> None:
    settings = fresh_settings(base_settings, "ab-report")
    settings = settings.model_copy(
        update={"experiments": settings.experiments.model_validate({"active": [{"name": "formula", "variants": ARMS}]})}
    )
    names = topic_names(settings.kafka)
    lines, catalog = simulated_lines(3_000, seed=2, n_users=100, n_items=200, start=time.time() - 3600)
    users = [f"buyer{i}" for i in range(40)]
    try:
        with WorkerProcess(settings, LOGS / f"{settings.worker.app_id}.log") as worker:
            asyncio.run(produce_paced(settings.kafka.bootstrap_servers, names.items, catalog, None))
            asyncio.run(produce_paced(settings.kafka.bootstrap_servers, names.events, lines, None))
            asyncio.run(_handled(settings, len(lines), worker))
            time.sleep(2 * settings.serving.popular_refresh_s)
            served, n_clicks = asyncio.run(_serve_and_click(settings, users))
            time.sleep(1.0)
        for key, value in child_env(settings).items():
            if key.startswith("STREAMREC_"):
                monkeypatch.setenv(key, value)
        register(cli_app, bench_app)
        result = CliRunner().invoke(cli_app, ["experiment", "report", "--json"])
    finally:
        drop_topics(settings)
    assert result.exit_code == 0, result.output
    report = orjson.loads(result.output)
    rows = {r["variant"]: r for r in report["variants"]}
    assert set(rows) == {"formula:control", "formula:clicks"} == set(served)
    assert sum(r["requests"] for r in rows.values()) >= len(users)  # plus the readiness probes
    assert n_clicks == len(users) // 2
    assert sum(r["clicked"] for r in rows.values()) == n_clicks  # every click found its served list


async def _handled(settings: Settings, n: int, worker: WorkerProcess) -> None:
    store = build_store(settings)
    try:
        await wait_handled(store, topic_names(settings.kafka).events, n, worker, timeout_s=120)
    finally:
        await store.close()


async def _serve_and_click(settings: Settings, users: list[str]) -> tuple[set[str], int]:
    variants = set()
    clicks = []
    async with RecClient(settings) as client:
        await wait_until_serving(client, None)
        for i, user in enumerate(users):
            resp = await client.recommend(user, 5, deadline_ms=2000)
            variants.add(resp.variant)
            if i % 2 == 0 and resp.items:
                clicks.append(
                    orjson.dumps(
                        {
                            "event_id": f"ab-{i}",
                            "type": "click",
                            "user_id": user,
                            "item_id": resp.items[0].item_id,
                            "request_id": resp.correlation_id,
                            "ts": datetime.now(UTC).isoformat(),
                        }
                    )
                )
    await produce_paced(settings.kafka.bootstrap_servers, topic_names(settings.kafka).events, clicks, None)
    return variants, len(clicks)
