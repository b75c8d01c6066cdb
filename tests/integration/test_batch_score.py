"""batch-score over real Redis: lists in Redis and Parquet, the job record, concept-test, and the precomputed
tier served by a worker once the model is retired (filtered by what the user did since)."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq

from agents.batch import list_users
from agents.runtime import build_store
from state.precomputed import PrecomputedList
from state.redis_store import RedisFeatureStore
from streams.bench.harness import WorkerProcess, simulated_lines, wait_until_serving
from streams.bench.ingest import produce_paced, wait_handled
from streams.client import RecClient
from streams.codec import encode
from streams.demo import train_models
from streams.jobs import JobRecord
from streams.records import Event, RecommendResponse
from streams.settings import Settings, child_env
from streams.topics import topic_names
from tests.integration.conftest import LOGS, drop_topics, fresh_settings

TOP_K = 5


def cli(settings: Settings, *args: str) -> str:
    """Run ``streamrec ARGS`` with these settings; its stdout (fails the test on a non-zero exit)."""
    proc = subprocess.run(
        [sys.executable, "-m", "streams.cli", *args],
        env=child_env(settings),
        capture_output=True,
        timeout=300,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr.decode()[-3000:]
    return proc.stdout.decode()


async def store_view(settings: Settings) -> tuple[list[str], dict[str, PrecomputedList], dict[str, set[str]], int]:
    """Users in Redis, their precomputed lists, their purchases and the TTL of one list key."""
    store = build_store(settings)
    assert isinstance(store, RedisFeatureStore)
    try:
        users = await list_users(store, 1000, None)
        lists = {u: p for u in users if (p := await store.read_precomputed(u)) is not None}
        states = await store.read_users(users)
        bought = {u: set(s.purchased) for u, s in zip(users, states, strict=True) if s is not None}
        ttl = int(await store.client.ttl(store.keys.precomputed(users[0])))
        return users, lists, bought, ttl
    finally:
        await store.close()


async def until_no_model(settings: Settings, user: str, timeout_s: float = 30.0) -> RecommendResponse:
    async with RecClient(settings) as client:
        end = time.monotonic() + timeout_s
        while time.monotonic() < end:
            resp = await client.recommend(user, TOP_K, deadline_ms=2000)
            if resp.model_version == "none":
                return resp
            await asyncio.sleep(0.3)
    raise AssertionError("the worker kept its model after the champion was retired")


async def ask(settings: Settings, user: str, exclude: list[str] | None = None) -> RecommendResponse:
    async with RecClient(settings) as client:
        return await client.recommend(user, TOP_K, exclude=exclude or [], deadline_ms=2000)


async def handled(settings: Settings, n: int, worker: WorkerProcess) -> None:
    store = build_store(settings)
    try:
        await wait_handled(store, topic_names(settings.kafka).events, n, worker, timeout_s=120)
    finally:
        await store.close()


def purchase(user: str, item: str) -> bytes:
    ev = Event(
        event_id=f"buy-{uuid.uuid4().hex}",
        type="purchase",
        user_id=user,
        item_id=item,
        ts=datetime.now(UTC),
        price=10.0,
    )
    return encode(ev)


def test_batch_score_redis_parquet_jobs_and_the_precomputed_tier(base_settings: Settings, tmp_path: Path) -> None:
    settings = fresh_settings(base_settings, "batch-score")
    settings = settings.model_copy(
        update={
            "models": settings.models.model_copy(
                update={"registry_dir": tmp_path / "registry", "poll_interval_s": 0.5}
            ),
            "batch": settings.batch.model_copy(update={"jobs_dir": tmp_path / "jobs", "rec_ttl_s": 3600}),
        }
    )
    lines, catalog = simulated_lines(6_000, seed=21, n_users=150, n_items=300, start=time.time() - 3600)
    (tmp_path / "events.jsonl").write_bytes(b"\n".join(lines) + b"\n")
    (tmp_path / "catalog.jsonl").write_bytes(b"\n".join(catalog) + b"\n")
    assert train_models(tmp_path, tmp_path / "registry", "tiny") == "v0001"
    servers, names = settings.kafka.bootstrap_servers, topic_names(settings.kafka)
    try:
        with WorkerProcess(settings, LOGS / f"{settings.worker.app_id}.log") as worker:
            asyncio.run(produce_paced(servers, names.items, catalog, None))
            asyncio.run(produce_paced(servers, names.events, lines, None))
            asyncio.run(handled(settings, len(lines), worker))
            _check_batch_outputs(settings, tmp_path)
            _check_served_after_retirement(settings, tmp_path, worker, len(lines))
    finally:
        drop_topics(settings)
        asyncio.run(_cleanup(settings))


def _check_batch_outputs(settings: Settings, tmp_path: Path) -> None:
    cli(settings, "batch-score", "--top-k", str(TOP_K), "--out", "redis", "--json", str(tmp_path / "job.json"))
    job = JobRecord.model_validate_json((tmp_path / "job.json").read_bytes())
    users, lists, bought, ttl = asyncio.run(store_view(settings))
    assert job.status == "succeeded" and job.progress == 1.0 and job.error is None
    assert job.counts.users == len(users) == job.total and job.counts.written == len(lists) == len(users)
    assert job.counts.failed == 0 and job.result["model_version"] == "v0001" and job.result["users_per_s"] > 0
    assert 3500 <= ttl <= 3600
    for user, plist in lists.items():
        ids = [i for i, _ in plist.items]
        assert len(ids) == TOP_K == len(set(ids)) and plist.job_id == job.id and plist.model_version == "v0001"
        assert not set(ids) & bought.get(user, set())
    shown = json.loads(cli(settings, "jobs", "show", job.id, "--json"))
    assert shown == json.loads((tmp_path / "job.json").read_text())
    listed = [json.loads(line) for line in cli(settings, "jobs", "list", "--json").splitlines()]
    assert [r["id"] for r in listed] == [job.id]
    assert job.id in cli(settings, "jobs", "list")

    out = tmp_path / "recs.parquet"
    cli(settings, "batch-score", "--top-k", str(TOP_K), "--max-users", "25", "--out", "parquet", "--path", str(out))
    rows = pq.read_table(out).to_pylist()
    per_user: dict[str, list[int]] = {}
    for r in rows:
        per_user.setdefault(r["user_id"], []).append(r["rank"])
    assert len(rows) == 25 * TOP_K and len(per_user) == 25 and set(per_user) <= set(users)
    assert all(sorted(ranks) == list(range(TOP_K)) for ranks in per_user.values())
    second = [
        r
        for r in (
            JobRecord.model_validate(x) for x in map(json.loads, cli(settings, "jobs", "list", "--json").splitlines())
        )
        if r.id != job.id
    ]
    assert len(second) == 1 and second[0].result["rows"] == 25 * TOP_K and second[0].params["out"] == "parquet"

    user = next(iter(lists))
    names = [i for i, _ in lists[user].items[:3]]
    concept = json.loads(
        cli(settings, "concept-test", "--user", user, "--items", ",".join([*names, "no-such-item"]), "--json")
    )
    assert concept["model_version"] == "v0001" and len(concept["items"]) == 4
    by_id: dict[str, Any] = {r["item_id"]: r for r in concept["items"]}
    assert not by_id["no-such-item"]["known"] and all(by_id[n]["known"] and by_id[n]["filtered"] is None for n in names)
    values = [r["value"] for r in concept["items"]]
    assert values == sorted(values, reverse=True) and all(0 <= r["p_click"] <= 1 for r in concept["items"])


def _check_served_after_retirement(settings: Settings, tmp_path: Path, worker: WorkerProcess, n_events: int) -> None:
    _, lists, _, _ = asyncio.run(store_view(settings))
    users = sorted(lists)
    (tmp_path / "registry" / "CHAMPION").unlink()  # retire the model: workers serve without one
    first = asyncio.run(until_no_model(settings, users[0]))
    stored = {u: [i for i, _ in lists[u].items] for u in users[:3]}
    assert first.fallback and [i.item_id for i in first.items] == stored[users[0]]
    assert {i.source for i in first.items} == {"precomputed"} and {i.reason for i in first.items} == {"precomputed"}

    excluded = asyncio.run(ask(settings, users[1], exclude=[stored[users[1]][0]]))
    ids = [i.item_id for i in excluded.items]
    assert stored[users[1]][0] not in ids and ids[: TOP_K - 1] == stored[users[1]][1:] and len(ids) == TOP_K
    assert [i.source for i in excluded.items[: TOP_K - 1]] == ["precomputed"] * (TOP_K - 1)
    assert excluded.items[-1].source != "precomputed" and excluded.fallback  # topped up from the pools

    buyer, item = users[2], stored[users[2]][1]
    asyncio.run(
        produce_paced(
            settings.kafka.bootstrap_servers, topic_names(settings.kafka).events, [purchase(buyer, item)], None
        )
    )
    asyncio.run(handled(settings, n_events + 1, worker))
    after = asyncio.run(ask(settings, buyer))
    assert item not in [i.item_id for i in after.items]
    assert [i.item_id for i in after.items[: TOP_K - 1]] == [x for x in stored[buyer] if x != item]

    async def probe() -> None:
        async with RecClient(settings) as client:
            await wait_until_serving(client, worker)

    asyncio.run(probe())


async def _cleanup(settings: Settings) -> None:
    store = build_store(settings)
    assert isinstance(store, RedisFeatureStore)
    try:
        keys = [k async for k in store.client.scan_iter(match=store.keys.pattern(), count=1000)]
        if keys:
            await store.client.delete(*keys)
    finally:
        await store.close()
