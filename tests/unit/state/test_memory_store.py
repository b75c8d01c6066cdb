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
async def test_closed_store_does_not_answer_ping() -> None:
    store = MemoryFeatureStore()
    await store.close()
    await store.close()
    assert await store.ping() is False


def test_popularity_without_reference_is_rejected() -> None:
    with pytest.raises(ValueError, match="popularity_ref"):
        WriteBatch("events", popularity={"a": 1.0})
