"""The in-memory store passes the store contract, and expires users on its injected clock."""

from __future__ import annotations

import pytest

from state.features import new_user_state
from state.memory_store import MemoryFeatureStore
from state.store import WriteBatch
from streams.clock import FakeClock
from tests.contracts.store_contract import T0, StoreContract


class TestMemoryStoreContract(StoreContract):
    @pytest.fixture
    def store(self) -> MemoryFeatureStore:
        return MemoryFeatureStore(clock=FakeClock(T0))


@pytest.mark.asyncio
async def test_users_expire_after_the_ttl() -> None:
    clock = FakeClock(T0)
    store = MemoryFeatureStore(clock=clock, user_ttl_s=60)
    await store.write_batch(WriteBatch("events", users={"u": new_user_state("u")}))
    clock.advance(59)
    assert await store.read_user("u") is not None
    clock.advance(2)
    assert await store.read_user("u") is None


@pytest.mark.asyncio
async def test_precomputed_lists_expire_and_expired_users_are_not_scanned() -> None:
    from state.precomputed import PrecomputedList

    clock = FakeClock(T0)
    store = MemoryFeatureStore(clock=clock, user_ttl_s=60)
    await store.write_batch(WriteBatch("events", users={"old": new_user_state("old")}))
    clock.advance(30)
    await store.write_batch(WriteBatch("events", users={"new": new_user_state("new")}))
    await store.write_precomputed([PrecomputedList("new", (("a", 1.0),), "v1", "j", T0)], 45)
    clock.advance(31)  # "old" is 61 s old, "new" 31 s
    assert await store.scan_users(None, 10) == (None, ["new"])
    assert await store.read_precomputed("new") is not None
    clock.advance(15)
    assert await store.read_precomputed("new") is None


@pytest.mark.asyncio
async def test_memory_scan_survives_deletes_between_pages() -> None:
    store = MemoryFeatureStore()
    await store.write_batch(WriteBatch("events", users={f"u{j}": new_user_state(f"u{j}") for j in range(6)}))
    cursor, first = await store.scan_users(None, 3)
    assert first == ["u0", "u1", "u2"] and cursor is not None
    del store.strings[store.keys.user("u0")], store.strings[store.keys.user("u1")]
    cursor, rest = await store.scan_users(cursor, 3)
    assert rest == ["u3", "u4", "u5"] and cursor is None


@pytest.mark.asyncio
async def test_closed_store_does_not_answer_ping() -> None:
    store = MemoryFeatureStore()
    await store.close()
    await store.close()
    assert await store.ping() is False


def test_popularity_without_reference_is_rejected() -> None:
    with pytest.raises(ValueError, match="popularity_ref"):
        WriteBatch("events", popularity={"a": 1.0})
