"""Batch scoring over the in-memory store with a tiny trained model: lists, sinks, job records, concept test."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import pytest
from batch_world import BatchWorld, fill_store, settings_for, train_tiny

from agents.batch import BatchConfig, list_users, load_catalog
from agents.batch_job import BatchJob, batch_funnel, load_ranker_version
from agents.funnel.concept import concept_rows
from state.errors import StoreUnavailable
from state.memory_store import MemoryFeatureStore
from state.precomputed import PrecomputedList
from streams.clock import FakeClock
from streams.errors import ConfigError
from streams.jobs import JobStore
from streams.records import RecommendRequest


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> BatchWorld:
    root = tmp_path_factory.mktemp("batch")
    registry, users, items, now = train_tiny(root)
    return BatchWorld(settings_for(root), registry, users, items, now)


def _job(w: BatchWorld, store: MemoryFeatureStore, tmp: Path, **kw: object) -> tuple[BatchJob, JobStore]:
    cfg = BatchConfig(top_k=5, chunk_size=7, concurrency=3, scan_count=4, **kw)  # type: ignore[arg-type]
    return BatchJob(w.settings, store, cfg, clock=FakeClock(w.now)), JobStore(tmp / "jobs")


async def test_every_user_gets_the_list_the_serving_funnel_gives(world: BatchWorld, tmp_path: Path) -> None:
    store = await fill_store(world)
    job, jobs = _job(world, store, tmp_path)
    starts: list[int] = []
    job.on_start = starts.append
    rec, summary = await job.run(jobs)
    n = len(world.users)
    assert rec.status == "succeeded" and rec.progress == 1.0 and rec.total == n == starts[0]
    assert (rec.counts.users, rec.counts.written, rec.counts.failed) == (n, n, 0)
    assert jobs.get(rec.id) == rec and rec.result["out"] == "redis" and rec.result["lists"] == n
    assert rec.result["users_per_s"] > 0 and summary.skipped == 0
    loaded = load_ranker_version(world.settings)
    catalog = await load_catalog(store, loaded.item_ids)
    direct = batch_funnel(world.settings, store, loaded, catalog, 5)
    for user, state in world.users.items():
        plist = await store.read_precomputed(user)
        assert plist is not None and plist.job_id == rec.id and plist.model_version == loaded.manifest.version
        got = [i for i, _ in plist.items]
        assert len(got) == 5 and len(set(got)) == 5 and not set(got) & set(state.purchased)
        want = await direct.run(RecommendRequest(correlation_id="x", user_id=user, k=5), state, now=world.now)
        assert got == [i.item_id for i in want.items]
        assert [s for _, s in plist.items] == pytest.approx([i.score for i in want.items])


async def test_max_users_bounds_the_run_and_parquet_holds_one_row_per_rank(world: BatchWorld, tmp_path: Path) -> None:
    import pyarrow.parquet as pq

    store = await fill_store(world)
    job, jobs = _job(world, store, tmp_path, max_users=10)
    job.out, job.path = "parquet", tmp_path / "out" / "recs.parquet"
    rec, _ = await job.run(jobs)
    assert (rec.counts.users, rec.counts.written, rec.result["rows"]) == (10, 10, 50)
    table = pq.read_table(tmp_path / "out" / "recs.parquet").to_pylist()
    assert len(table) == 50 and {r["job_id"] for r in table} == {rec.id}
    by_user: dict[str, list[int]] = {}
    for r in table:
        by_user.setdefault(r["user_id"], []).append(r["rank"])
        assert r["item_id"] in world.items and r["model_version"] == rec.result["model_version"]
    assert len(by_user) == 10 and all(sorted(v) == [0, 1, 2, 3, 4] for v in by_user.values())
    assert not list((tmp_path / "out").glob("*.tmp")) and await store.read_precomputed(next(iter(by_user))) is None


async def test_list_users_deduplicates_and_stops_at_the_limit(world: BatchWorld) -> None:
    store = await fill_store(world)
    assert sorted(await list_users(store, 3, None)) == sorted(world.users)
    assert len(await list_users(store, 3, 5)) == 5 and await list_users(store, 3, 0) == []


async def test_without_a_champion_the_job_fails_with_the_reason(world: BatchWorld, tmp_path: Path) -> None:
    store = await fill_store(world)
    job, jobs = _job(world, store, tmp_path)
    job.settings = world.settings.model_copy(
        update={"models": world.settings.models.model_copy(update={"registry_dir": tmp_path / "empty"})}
    )
    with pytest.raises(ConfigError, match="no champion"):
        await job.run(jobs)
    (rec,) = jobs.list()
    assert rec.status == "failed" and rec.error is not None and "no champion" in rec.error
    assert rec.finished_at is not None and rec.counts.users == 0


class _FlakySink:
    def __init__(self) -> None:
        self.chunks = 0

    async def write(self, lists: Sequence[PrecomputedList]) -> None:
        self.chunks += 1
        if self.chunks == 3:
            raise StoreUnavailable("redis: connection refused")

    async def close(self) -> dict[str, object]:
        return {}


async def test_a_sink_failure_fails_the_job_with_the_counts_so_far(
    world: BatchWorld, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import agents.batch_job as bj

    store = await fill_store(world)
    monkeypatch.setattr(bj, "make_sink", lambda *a, **k: _FlakySink())
    job, jobs = _job(world, store, tmp_path)
    with pytest.raises(StoreUnavailable):
        await job.run(jobs)
    (rec,) = jobs.list()
    assert rec.status == "failed" and "StoreUnavailable" in (rec.error or "")
    assert rec.counts.users == 14 and rec.progress == pytest.approx(14 / len(world.users))  # two chunks of 7


async def test_users_expired_between_scan_and_read_are_skipped(world: BatchWorld, tmp_path: Path) -> None:
    store = await fill_store(world)
    job, jobs = _job(world, store, tmp_path)
    real = store.read_users
    gone = sorted(world.users)[:3]

    async def expire_some(ids: Sequence[str]) -> list[object]:
        return [None if u in gone else s for u, s in zip(ids, await real(ids), strict=True)]

    store.read_users = expire_some  # type: ignore[assignment,method-assign]
    rec, summary = await job.run(jobs)
    assert summary.skipped == 3 and rec.counts.users == len(world.users) - 3 == rec.counts.written


async def test_concept_test_ranks_named_items_with_the_serving_scores(world: BatchWorld) -> None:
    store = await fill_store(world)
    loaded = load_ranker_version(world.settings)
    funnel = batch_funnel(world.settings, store, loaded, await load_catalog(store, loaded.item_ids), 10)
    user = max(world.users, key=lambda u: len(world.users[u].last_n))
    state = world.users[user]
    res = await funnel.run(RecommendRequest(correlation_id="c", user_id=user, k=6), state, now=world.now)
    served = {i.item_id: i for i in res.items}
    bought = next(iter(state.purchased)) if state.purchased else None
    ids = [*served, "nope", *([bought] if bought else [])]
    rows = concept_rows(
        funnel,
        user,
        state=state,
        user_vector=await store.read_user_vector(user),
        item_ids=ids,
        records=await store.read_items(ids),
        now=world.now,
    )
    assert [r.value for r in rows] == sorted((r.value for r in rows), reverse=True)
    for r in rows:
        if r.item_id in served:
            assert r.p_click == pytest.approx(served[r.item_id].p_click, rel=1e-5)
            assert r.value == pytest.approx(served[r.item_id].value, rel=1e-5) and r.filtered is None
    by_id = {r.item_id: r for r in rows}
    assert not by_id["nope"].known
    if bought:
        assert by_id[bought].filtered == "purchased"
