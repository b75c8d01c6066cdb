"""Replaying events changes nothing: not the user table, not one store key, counter or pool score.

Covers the two ways Kafka redelivers: the same messages again (a consumer that re-reads from an older
offset) and a crash (SIGKILL) between the store write and the changelog, after which a restarted
worker recovers its table from the changelog and resumes from the last committed offsets.
"""

from __future__ import annotations

import asyncio
import math
import random

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agents.ingest import RawMessage
from state.memory_store import MemoryFeatureStore
from streams.records import Event
from tests.stream_driver import StreamDriver, wire
from tests.unit.test_stream_vs_training import CATALOG, arrival_order, event_logs

Snapshot = tuple[dict[str, bytes], dict[str, dict[str, int]], dict[str, dict[str, float]]]


def snapshot(store: MemoryFeatureStore) -> Snapshot:
    return (
        dict(store.strings),
        {k: dict(v) for k, v in store.hashes.items()},
        {k: dict(v) for k, v in store.zsets.items()},
    )


def assert_same_store(a: Snapshot, b: Snapshot) -> None:
    assert a[0] == b[0]  # user states, catalog records: byte for byte
    assert a[1] == b[1]  # item counters and offset watermarks
    assert a[2].keys() == b[2].keys()
    for key, za in a[2].items():  # decayed pools: sums of the same increments, maybe grouped differently
        zb = b[2][key]
        assert za.keys() == zb.keys(), key
        assert all(math.isclose(za[m], zb[m], rel_tol=1e-9) for m in za), key


async def readable_pools(driver: StreamDriver) -> dict[str, dict[str, float]]:
    """Every decayed pool and co-visitation list as serving reads it at the driver's now.

    Batches replayed with other boundaries write the same increments relative to other reference times,
    so the stored generations may differ; what a reader sees may not (scores to 1e-9, scores under 1e-9 events dropped).
    """
    store, pools, now = driver.store, driver.rt.pools, driver.clock.now()
    items = [f"i{k}" for k in range(8)]
    specs = [pools.trending, store.popularity, *(pools.category_popular(f"c{k}") for k in range(3))]
    out = {spec.name: dict(await store.read_decayed(spec, 100, now)) for spec in specs}
    rows = await store.read_covisit(items, 100, now, pools.covisit_half_life_s)
    out |= {f"cv:{item}": dict(row) for item, row in zip(items, rows, strict=True)}
    kept = {name: {m: v for m, v in scores.items() if v > 1e-9} for name, scores in out.items()}
    return {name: scores for name, scores in kept.items() if scores}


async def uninterrupted(msgs: list[bytes | tuple[str, bytes]], now: float) -> StreamDriver:
    driver = StreamDriver(now)
    await driver.load_catalog(CATALOG)
    await driver.consume_in_batches(driver.produce(msgs), [7] * len(msgs))  # type: ignore[arg-type]
    return driver


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(events=event_logs(), seed=st.integers(0, 2**32 - 1))
def test_consuming_the_same_messages_again_changes_nothing(events: list[Event], seed: int) -> None:
    rnd = random.Random(seed)
    arrived = arrival_order(events, rnd, reorder=False)
    last = max(e.ts.timestamp() for e in events)

    async def run() -> None:
        driver = await uninterrupted([wire(e) for e in arrived], last + 1.0)
        before, table = snapshot(driver.store), driver.table_bytes()
        again = list(driver.log)
        await driver.consume_in_batches(again, [rnd.randint(1, 30) for _ in again])
        assert_same_store(snapshot(driver.store), before)
        assert driver.table_bytes() == table
        assert driver.dead.letters == []

    asyncio.run(run())


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(events=event_logs(), seed=st.integers(0, 2**32 - 1), cut=st.floats(0, 1), lost=st.floats(0, 1))
def test_a_crash_between_store_and_changelog_then_replay_ends_like_an_uninterrupted_run(
    events: list[Event], seed: int, cut: float, lost: float
) -> None:
    rnd = random.Random(seed)
    lines = [wire(e) for e in arrival_order(events, rnd, reorder=False)]
    last = max(e.ts.timestamp() for e in events)

    async def run() -> None:
        want = await uninterrupted(list(lines), last + 1.0)
        driver = StreamDriver(last + 1.0)
        await driver.load_catalog(CATALOG)
        msgs = driver.produce(lines)
        done = round(cut * len(msgs))
        head = max(0, done - rnd.randint(1, 20))
        await driver.consume_in_batches(msgs[:head], [rnd.randint(1, 20) for _ in msgs])
        before = len(driver.table.changelog)
        if done > head:
            await driver.consume(msgs[head:done])
        # SIGKILL right after the last batch reached the store: part of its changelog never got out.
        del driver.table.changelog[len(driver.table.changelog) - round(lost * (len(driver.table.changelog) - before)) :]
        driver.restart()
        # Kafka resumes each partition after its last committed offset: the batches before the last one, or
        # fewer (offsets are committed after the changelog is flushed, every commit interval).
        committed = {
            p: rnd.randint(-1, max(m.offset for m in msgs[:head] if m.partition == p))
            for p in {m.partition for m in msgs[:head]}
        }
        rest: list[RawMessage] = [m for m in msgs if m.offset > committed.get(m.partition, -1)]
        await driver.consume_in_batches(rest, [rnd.randint(1, 20) for _ in rest])
        assert snapshot(driver.store)[:2] == snapshot(want.store)[:2]  # states, catalog, counters, offsets
        got, expected = await readable_pools(driver), await readable_pools(want)
        assert got.keys() == expected.keys()
        for name, scores in got.items():
            assert scores.keys() == expected[name].keys(), name
            assert all(math.isclose(v, expected[name][m], rel_tol=1e-9) for m, v in scores.items()), name
        assert driver.table_bytes() == want.table_bytes()

    asyncio.run(run())
