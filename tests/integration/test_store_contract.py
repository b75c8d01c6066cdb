"""The store contract against a real Redis (``STREAMREC_TEST_REDIS_URL``), plus Redis-only checks."""

from __future__ import annotations

import asyncio
import os
import secrets
from collections.abc import AsyncIterator

import pytest
import pytest_asyncio
import redis.asyncio as aioredis
from redis import exceptions as rexc

from state.errors import StoreUnavailable
from state.features import new_user_state
from state.items import ItemCounts, ItemRecord
from state.memory_store import MemoryFeatureStore
from state.redis_store import RedisFeatureStore, glob_escape
from state.store import WriteBatch
from streams.settings import RedisSettings
from tests.contracts.store_contract import T0, StoreContract

ENV = "STREAMREC_TEST_REDIS_URL"
DEFAULT_URL = "redis://127.0.0.1:16379/0"


async def _answers(url: str) -> bool:
    client = aioredis.Redis.from_url(url, socket_connect_timeout=0.5, socket_timeout=0.5)
    try:
        return bool(await client.ping())
    except (rexc.RedisError, OSError):
        return False
    finally:
        await client.aclose()


@pytest_asyncio.fixture
async def redis_url() -> str:
    url = os.environ.get(ENV)
    if url is None:
        if not await _answers(DEFAULT_URL):
            pytest.skip(f"no Redis: set {ENV} (nothing answers at {DEFAULT_URL})")
        return DEFAULT_URL
    if not await _answers(url):
        pytest.fail(f"{ENV}={url} but Redis does not answer")
    return url


@pytest_asyncio.fixture
async def store(redis_url: str) -> AsyncIterator[RedisFeatureStore]:
    prefix = f"t{secrets.token_hex(6)}"
    s = RedisFeatureStore(RedisSettings(url=redis_url, key_prefix=prefix, user_ttl_s=3600))
    yield s
    keys = [k async for k in s.client.scan_iter(match=s.keys.pattern(), count=1000)]
    if keys:
        await s.client.delete(*keys)
    await s.close()


class TestRedisStoreContract(StoreContract):
    """Every contract test, against Redis (the ``store`` fixture above)."""


@pytest.mark.asyncio
async def test_user_keys_carry_the_ttl(store: RedisFeatureStore) -> None:
    await store.write_batch(WriteBatch("events", users={"u": new_user_state("u")}))
    ttl = await store.client.ttl(store.keys.user("u"))
    assert 3590 <= ttl <= 3600


@pytest.mark.asyncio
async def test_write_is_one_transaction(store: RedisFeatureStore) -> None:
    sent: list[list[object]] = []
    real = store.client.pipeline

    def spy(transaction: bool = True) -> object:
        pipe = real(transaction=transaction)
        sent.append([transaction])
        return pipe

    store.client.pipeline = spy  # type: ignore[method-assign,assignment]
    users = {f"u{i}": new_user_state(f"u{i}") for i in range(200)}
    await store.write_batch(WriteBatch("events", offsets={0: 1}, users=users))
    await store.read_user("u1")
    assert sent == [[True], [False]]


@pytest.mark.asyncio
async def test_reading_many_items_is_one_round_trip(store: RedisFeatureStore) -> None:
    items = {f"i{i}": ItemRecord(f"i{i}", "c", price=float(i)) for i in range(0, 3000, 2)}
    await store.write_batch(WriteBatch("items", items=items, item_counts={"i4": ItemCounts((1, 2, 3, 4, 5))}))
    ids = [f"i{i}" for i in range(3000)]
    checkouts: list[object] = []
    pool = store.client.connection_pool
    real = pool.get_connection

    async def spy(*args: object, **kwargs: object) -> object:
        checkouts.append(args)
        return await real(*args, **kwargs)  # type: ignore[arg-type]

    pool.get_connection = spy  # type: ignore[method-assign]
    got = await store.read_items(ids)
    cols = await store.read_item_columns(ids)
    assert len(checkouts) == 2  # one connection, one write, six replies per read
    assert cols.records() == got
    assert [r is None for r in got] == [i % 2 == 1 for i in range(3000)]
    assert got[4] == ItemRecord("i4", "c", price=4.0, counts=ItemCounts((1, 2, 3, 4, 5)))
    assert got[2999] is None and got[2998] is not None and got[2998].counts == ItemCounts()
    odd = [*ids[:3], "x\0y", "é"]
    assert [r.item_id if r else None for r in await store.read_items(odd)] == ["i0", None, "i2", None, None]


@pytest.mark.asyncio
async def test_unreachable_redis_raises_store_unavailable() -> None:
    s = RedisFeatureStore(RedisSettings(url="redis://127.0.0.1:1/0", socket_timeout_s=0.2))
    with pytest.raises(StoreUnavailable, match=r"127\.0\.0\.1:1"):
        await s.read_user("u")
    assert await s.ping() is False
    await s.close()


@pytest.mark.asyncio
async def test_redis_and_memory_agree_on_concurrent_writers(store: RedisFeatureStore) -> None:
    mem = MemoryFeatureStore(key_prefix=store.keys.prefix)
    incs = [{f"i{j % 7}": 1.0 + j for j in range(k, k + 5)} for k in range(20)]
    batches = [
        WriteBatch("events", offsets={k % 3: k}, popularity=inc, popularity_ref=T0 + k) for k, inc in enumerate(incs)
    ]
    await asyncio.gather(*(store.write_batch(b) for b in batches))
    for b in reversed(batches):
        await mem.write_batch(b)
    r, m = await store.top_popular(10, T0 + 30), await mem.top_popular(10, T0 + 30)
    assert [x for x, _ in r] == [x for x, _ in m]
    assert [s for _, s in r] == pytest.approx([s for _, s in m], rel=1e-12)
    assert await store.applied_offsets("events") == await mem.applied_offsets("events") == {0: 18, 1: 19, 2: 17}


@pytest.mark.asyncio
async def test_redis_bytes_per_active_user_within_1kb(store: RedisFeatureStore) -> None:
    """Simulated traffic over 100k users; every active user has its state and a 32-d session vector."""
    import numpy as np

    from state.feature_config import EventView, FeatureConfig
    from state.features import apply_events
    from streams.records import EVENT_TYPES
    from streams.simulator import SimConfig, Simulator

    sim = Simulator(SimConfig(n_users=100_000, n_items=5_000))
    cats = sim.world.catalog.category
    by_user: dict[str, list[EventView]] = {}
    for b in sim.batches(max_events=200_000):
        for ts, t, u, i, s, q in zip(
            b.ts.tolist(),
            b.type.tolist(),
            b.user.tolist(),
            b.item.tolist(),
            b.session.tolist(),
            b.seq.tolist(),
            strict=True,
        ):
            ev = EventView(f"e7-{q}", EVENT_TYPES[t], f"u{u}", f"i{i}", ts, f"s7-{s}", None, f"cat{cats[i]}")
            by_user.setdefault(ev.user_id, []).append(ev)
    cfg = FeatureConfig()
    vec = np.random.default_rng(0).normal(size=32).astype(np.float32)
    users = {}
    for u, evs in by_user.items():
        users[u] = new_user_state(u)
        apply_events(users[u], evs, cfg)
    ids = list(users)
    for k in range(0, len(ids), 2000):
        chunk = {u: users[u] for u in ids[k : k + 2000]}
        await store.write_batch(WriteBatch("events", users=chunk, user_vectors=dict.fromkeys(chunk, vec)))
    per_user = await store.bytes_per_user(ids)
    assert len(ids) > 5_000
    assert per_user <= 1024, f"{per_user:.0f} bytes per active user over {len(ids)} users"


@pytest.mark.asyncio
async def test_scan_treats_the_prefix_literally_and_lists_no_other_prefix(redis_url: str) -> None:
    from state.precomputed import PrecomputedList

    tag = secrets.token_hex(4)
    glob = RedisFeatureStore(RedisSettings(url=redis_url, key_prefix=f"t*{tag}[x]"))
    plain = RedisFeatureStore(RedisSettings(url=redis_url, key_prefix=f"tA{tag}x"))
    try:
        await glob.write_batch(WriteBatch("events", users={"mine": new_user_state("mine")}))
        await plain.write_batch(WriteBatch("events", users={"theirs": new_user_state("theirs")}))
        await glob.write_precomputed([PrecomputedList("mine", (("a", 1.0),), "v1", "j", T0)], 120)
        seen: list[str] = []
        cursor: str | None = None
        while True:
            cursor, page = await glob.scan_users(cursor, 1000)
            seen += page
            if cursor is None:
                break
        assert seen == ["mine"]
        ttl = await glob.client.ttl(glob.keys.precomputed("mine"))
        assert 110 <= ttl <= 120
        assert glob.keys.precomputed("mine") == f"t*{tag}[x]:v1:rec:mine"
    finally:
        for s in (glob, plain):
            keys = [k async for k in s.client.scan_iter(match=glob_escape(s.keys.root) + "*", count=1000)]
            if keys:
                await s.client.delete(*keys)
            await s.close()
