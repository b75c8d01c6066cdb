"""The contract every ``OnlineFeatureStore`` passes; subclass ``StoreContract`` and provide a ``store`` fixture."""

from __future__ import annotations

import numpy as np
import pytest

from state.feature_config import EventView, FeatureConfig
from state.features import apply_events, encode_state, new_user_state
from state.items import ItemCounts, ItemRecord
from state.popularity import epoch, generation, popularity_increments
from state.precomputed import PrecomputedList
from state.store import CovisitUpdate, DecayedUpdate, DecaySpec, OnlineFeatureStore, PoolUpdate, WriteBatch

T0 = 1_700_000_000.0
HL = 6 * 3600.0  # the stores' default popularity half-life
CFG = FeatureConfig()


def user_with_events(user_id: str, n: int) -> object:
    s = new_user_state(user_id)
    evs = [EventView(f"{user_id}-e{i}", "view", user_id, f"i{i}", T0 + i, "s1", 10.0, "c1") for i in range(n)]
    apply_events(s, evs, CFG)
    return s


def item(item_id: str, category: str = "c1", price: float = 9.5) -> ItemRecord:
    return ItemRecord(item_id, category, "b1", price, True, T0 - 100.0)


class StoreContract:
    """Behaviour shared by the in-memory and Redis stores."""

    @pytest.mark.asyncio
    async def test_user_round_trip(self, store: OnlineFeatureStore) -> None:
        s = new_user_state("u1")
        evs = [EventView(f"e{i}", "click", "u1", f"i{i}", T0 + i, "s", None, "c") for i in range(5)]
        apply_events(s, evs, CFG)
        await store.write_batch(WriteBatch("events", users={"u1": s}))
        got = await store.read_user("u1")
        assert got is not None and encode_state(got) == encode_state(s)
        assert await store.read_user("nobody") is None

    @pytest.mark.asyncio
    async def test_offsets_keep_the_maximum_per_source_and_partition(self, store: OnlineFeatureStore) -> None:
        assert await store.applied_offsets("events") == {}
        await store.write_batch(WriteBatch("events", offsets={0: 10, 1: 5}))
        await store.write_batch(WriteBatch("events", offsets={0: 7, 2: 1}))
        await store.write_batch(WriteBatch("items", offsets={0: 99}))
        assert await store.applied_offsets("events") == {0: 10, 1: 5, 2: 1}
        assert await store.applied_offsets("items") == {0: 99}

    @pytest.mark.asyncio
    async def test_items_aligned_with_counters_merged(self, store: OnlineFeatureStore) -> None:
        ids = [f"it{i}" for i in range(300)]
        await store.write_batch(WriteBatch("items", items={i: item(i) for i in ids[:200]}))
        await store.write_batch(WriteBatch("events", item_counts={"it1": ItemCounts((3, 1, 0, 0, 10))}))
        await store.write_batch(WriteBatch("events", item_counts={"it1": ItemCounts((1, 1, 1, 1, 0))}))
        got = await store.read_items([*ids, "it1"])
        assert len(got) == 301
        assert all(r is not None for r in got[:200]) and all(r is None for r in got[200:300])
        rec = got[1]
        assert rec is not None and rec == got[300]
        assert rec.counts.counts == (4, 2, 1, 1, 10)
        assert (rec.category, rec.brand, rec.price, rec.available, rec.created_at) == ("c1", "b1", 9.5, True, T0 - 100)
        assert rec.ctr() == pytest.approx((2 + 1) / (10 + 20))
        assert await store.read_items([]) == []

    @pytest.mark.asyncio
    async def test_item_upsert_replaces_catalog_fields_and_keeps_counters(self, store: OnlineFeatureStore) -> None:
        await store.write_batch(
            WriteBatch("items", items={"a": item("a")}, item_counts={"a": ItemCounts((1, 0, 0, 0, 0))})
        )
        new = ItemRecord("a", "c2", "b2", 20.0, False, T0, ItemCounts((50, 50, 50, 50, 50)))
        await store.write_batch(WriteBatch("items", items={"a": new}))
        (got,) = await store.read_items(["a"])
        assert got == ItemRecord("a", "c2", "b2", 20.0, False, T0, ItemCounts((1, 0, 0, 0, 0)))

    @pytest.mark.asyncio
    async def test_popularity_decays_and_commutes(self, store: OnlineFeatureStore) -> None:
        a = [EventView("e1", "view", "u", "x", T0, None, None, None)]
        b = [
            EventView("e2", "purchase", "u", "y", T0 + HL, None, None, None),
            EventView("e3", "view", "u", "x", T0 + HL, None, None, None),
        ]
        # Written newest first: increments commute.
        await store.write_batch(
            WriteBatch("events", popularity=popularity_increments(b, T0 + HL, CFG), popularity_ref=T0 + HL)
        )
        await store.write_batch(WriteBatch("events", popularity=popularity_increments(a, T0, CFG), popularity_ref=T0))
        top = await store.top_popular(10, T0 + 2 * HL)
        assert [m for m, _ in top] == ["y", "x"]
        assert dict(top)["y"] == pytest.approx(5 * 0.5)  # a purchase weighs 5, one half-life ago
        assert dict(top)["x"] == pytest.approx(0.25 + 0.5)
        assert await store.top_popular(1, T0 + 2 * HL) == top[:1]
        assert await store.top_popular(0, T0) == []

    @pytest.mark.asyncio
    async def test_popularity_survives_a_generation_change(self, store: OnlineFeatureStore) -> None:
        boundary = epoch(generation(T0, HL) + 1, HL)
        before = [EventView("e1", "view", "u", "x", boundary - HL, None, None, None)]
        inc = popularity_increments(before, boundary - HL, CFG)
        await store.write_batch(WriteBatch("events", popularity=inc, popularity_ref=boundary - HL))
        after = await store.top_popular(5, boundary + HL)
        assert after == [("x", pytest.approx(0.25))]

    @pytest.mark.asyncio
    async def test_decayed_pools_are_separate(self, store: OnlineFeatureStore) -> None:
        fast, slow = DecaySpec("trending", 600.0), DecaySpec("trending_slow", 6000.0)
        await store.write_batch(
            WriteBatch(
                "events",
                decayed=[
                    DecayedUpdate(fast, T0, {"a": 1.0, "b": 2.0}),
                    DecayedUpdate(slow, T0, {"a": 4.0}),
                ],
            )
        )
        assert await store.read_decayed(fast, 5, T0 + 600) == [("b", pytest.approx(1.0)), ("a", pytest.approx(0.5))]
        assert await store.read_decayed(slow, 5, T0 + 6000) == [("a", pytest.approx(2.0))]
        assert await store.top_popular(5, T0) == []

    @pytest.mark.asyncio
    async def test_set_pools_upsert_remove_and_trim(self, store: OnlineFeatureStore) -> None:
        await store.write_batch(
            WriteBatch("items", pools=[PoolUpdate("fresh:c1", {"a": 1.0, "b": 2.0, "c": 3.0, "d": 4.0})])
        )
        await store.write_batch(WriteBatch("items", pools=[PoolUpdate("fresh:c1", {"e": 0.5}, removes=["d"], keep=3)]))
        assert await store.read_pool("fresh:c1", 10) == [("c", 3.0), ("b", 2.0), ("a", 1.0)]
        assert await store.read_pool("fresh:c1", 1) == [("c", 3.0)]
        assert await store.read_pool("fresh:none", 5) == []

    @pytest.mark.asyncio
    async def test_pool_members_since_a_cursor(self, store: OnlineFeatureStore) -> None:
        log = {"a": 1.0, "b": 2.0, "c": 3.0, "d": 3.0}
        await store.write_batch(WriteBatch("items", pools=[PoolUpdate("catalog", log)]))
        assert await store.read_pool_since("catalog", 1.0, 10) == ["d", "c", "b"]  # strictly above, newest first
        assert await store.read_pool_since("catalog", 1.0, 2) == ["d", "c"]
        assert await store.read_pool_since("catalog", 3.0, 10) == []
        assert await store.read_pool_since("catalog", 2.5, 0) == []
        assert await store.read_pool_since("catalog", float("-inf"), 10) == ["d", "c", "b", "a"]
        assert await store.read_pool_since("none", 0.0, 10) == []

    @pytest.mark.asyncio
    async def test_covisit_top_k_with_decay(self, store: OnlineFeatureStore) -> None:
        pairs = {"a": {"b": 3.0, "c": 1.0, "d": 2.0}, "b": {"a": 3.0}}
        await store.write_batch(WriteBatch("events", covisit=CovisitUpdate(3600.0, 2, T0, pairs)))
        got = await store.read_covisit(["a", "b", "zz"], 5, T0 + 3600.0, 3600.0)
        assert got == [[("b", pytest.approx(1.5)), ("d", pytest.approx(1.0))], [("a", pytest.approx(1.5))], []]
        assert (await store.read_covisit(["a"], 1, T0, 3600.0)) == [[("b", pytest.approx(3.0))]]

    @pytest.mark.asyncio
    async def test_user_vectors_round_trip_as_float16(self, store: OnlineFeatureStore) -> None:
        v = np.linspace(-1, 1, 64, dtype=np.float32)
        await store.write_batch(WriteBatch("events", user_vectors={"u1": v}))
        got = await store.read_user_vector("u1")
        assert got is not None and got.dtype == np.float32 and got.shape == (64,)
        np.testing.assert_allclose(got, v, atol=1e-3)
        assert await store.read_user_vector("u2") is None

    @pytest.mark.asyncio
    async def test_batch_writes_everything_together(self, store: OnlineFeatureStore) -> None:
        s = new_user_state("u9")
        evs = [EventView("e1", "click", "u9", "a", T0, "s", 3.0, "c1")]
        apply_events(s, evs, CFG)
        batch = WriteBatch(
            "events",
            offsets={3: 42},
            users={"u9": s},
            popularity=popularity_increments(evs, T0, CFG),
            popularity_ref=T0,
            items={"a": item("a")},
            item_counts={"a": ItemCounts((0, 1, 0, 0, 0))},
        )
        await store.write_batch(batch)
        assert await store.applied_offsets("events") == {3: 42}
        assert (await store.read_user("u9")) is not None
        (rec,) = await store.read_items(["a"])
        assert rec is not None and rec.counts.clicks == 1
        assert await store.top_popular(3, T0) == [("a", pytest.approx(2.0))]

    @pytest.mark.asyncio
    async def test_scan_users_pages_through_every_user_and_nothing_else(self, store: OnlineFeatureStore) -> None:
        users = {f"user{j:03d}": new_user_state(f"user{j:03d}") for j in range(57)}
        vec = np.ones(8, np.float32)
        await store.write_batch(
            WriteBatch(
                "events",
                users=users,
                user_vectors={"only-vector": vec, "user001": vec},
                items={"u:fake": item("u:fake")},
            )
        )
        await store.write_precomputed([PrecomputedList("not-a-state", (("a", 1.0),), "v1", "j", T0)], 60)
        seen: list[str] = []
        cursor, pages = None, 0
        while True:
            cursor, page = await store.scan_users(cursor, 10)
            seen += page
            pages += 1
            if cursor is None:
                break
            # the count is a hint of keys looked at: a Redis shared with other prefixes needs many pages
            assert pages < 1_000_000, "scan does not terminate"
        assert set(seen) == set(users) and len(seen) >= len(users)
        assert pages >= 2  # the hint was honoured: 57 users did not come back in one page of 10
        with pytest.raises(ValueError, match="count"):
            await store.scan_users(None, 0)

    @pytest.mark.asyncio
    async def test_scan_of_an_empty_store_ends(self, store: OnlineFeatureStore) -> None:
        cursor, seen = None, []
        for _ in range(10_000):
            cursor, page = await store.scan_users(cursor, 100)
            seen += page
            if cursor is None:
                break
        assert cursor is None and seen == []

    @pytest.mark.asyncio
    async def test_read_many_users_and_vectors_aligned(self, store: OnlineFeatureStore) -> None:
        states = {u: user_with_events(u, n) for u, n in (("a", 1), ("b", 3), ("c", 7))}
        vecs = {"a": np.full(16, 0.5, np.float32), "c": np.linspace(0, 1, 16, dtype=np.float32)}
        await store.write_batch(WriteBatch("events", users=states, user_vectors=vecs))  # type: ignore[arg-type]
        got = await store.read_users(["c", "zz", "a", "b"])
        assert got[1] is None
        assert [encode_state(g) for g in (got[0], got[2], got[3]) if g is not None] == [
            encode_state(states[u])
            for u in ("c", "a", "b")  # type: ignore[arg-type]
        ]
        v = await store.read_user_vectors(["a", "b", "c"])
        assert v[1] is None and v[0] is not None and v[2] is not None
        np.testing.assert_allclose(v[0], vecs["a"], atol=1e-3)
        np.testing.assert_allclose(v[2], vecs["c"], atol=1e-3)
        assert await store.read_users([]) == [] and await store.read_user_vectors([]) == []

    @pytest.mark.asyncio
    async def test_precomputed_lists_round_trip_and_replace(self, store: OnlineFeatureStore) -> None:
        first = PrecomputedList("u1", (("a", 3.5), ("b", 1.25)), "v0001", "job1", T0)
        other = PrecomputedList("u2", (), "v0001", "job1", T0)
        await store.write_precomputed([first, other], 3600)
        assert await store.read_precomputed("u1") == first
        assert await store.read_precomputed("u2") == other
        assert await store.read_precomputed("u3") is None
        newer = PrecomputedList("u1", (("c", 9.0),), "v0002", "job2", T0 + 60)
        await store.write_precomputed([newer], 3600)
        assert await store.read_precomputed("u1") == newer
        await store.write_precomputed([], 3600)  # nothing to write is not an error
        with pytest.raises(ValueError, match="TTL"):
            await store.write_precomputed([first], 0)
        assert await store.read_user("u1") is None  # a list is not user state

    @pytest.mark.asyncio
    async def test_ping_and_close(self, store: OnlineFeatureStore) -> None:
        assert await store.ping() is True
