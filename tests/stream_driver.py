"""Drives the events agent's batch function (``agents.events.process_batch``) without a broker.

Messages get per-partition offsets as Kafka would give them (partition = user number mod partitions),
the user table is a dict with a recorded changelog, the store is the in-memory fake, time is a fake
clock. Tests use it to compare the stream with the training-side code and to replay batches.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from agents.events import process_batch
from agents.ingest import RawMessage
from agents.runtime import Runtime
from state.features import UserState, decode_state
from state.items import ItemRecord
from state.memory_store import MemoryFeatureStore
from state.store import WriteBatch
from streams.clock import FakeClock
from streams.codec import encode
from streams.errors import DecodeError
from streams.records import Event, ItemUpdate
from streams.settings import Settings, load_settings


class FakeTable:
    """The part of a Faust table the events agent touches: ``data`` and ``send_changelog``."""

    def __init__(self) -> None:
        self.data: dict[bytes, UserState | bytes] = {}
        self.changelog: list[tuple[int, bytes, bytes]] = []

    def send_changelog(self, partition: int, key: bytes, value: bytes) -> None:
        self.changelog.append((partition, key, value))

    def recovered(self) -> dict[bytes, bytes]:
        """What a worker restoring this changelog would hold (last value per key)."""
        return {key: value for _, key, value in self.changelog}


@dataclass
class FakeDeadLetters:
    letters: list[tuple[str, int, int]] = field(default_factory=list)  # (reason, partition, offset)

    async def send(self, exc: DecodeError, msg: RawMessage) -> None:
        self.letters.append((exc.reason, msg.partition, msg.offset))


def partition_of(user_id: str, partitions: int) -> int:
    """Deterministic stand-in for the producer's key hash (``u7`` -> 7 mod partitions)."""
    digits = "".join(c for c in user_id if c.isdigit())
    return int(digits or 0) % partitions


class StreamDriver:
    """One worker's events agent over an in-memory store, fed batch by batch."""

    def __init__(self, now: float, settings: Settings | None = None, partitions: int = 3) -> None:
        self.settings = settings or load_settings(worker={"app_id": "driver", "store": "memory"})
        self.clock = FakeClock(now)
        self.store = MemoryFeatureStore(clock=self.clock)
        self.rt = Runtime(settings=self.settings, store=self.store, clock=self.clock)
        self.table = FakeTable()
        self.rt.local_users = self.table.data
        self.dead = FakeDeadLetters()
        self.applied: dict[int, int] = {}
        self.partitions = partitions
        self._next: dict[int, int] = {}
        self.log: list[RawMessage] = []

    async def load_catalog(self, updates: Iterable[ItemUpdate]) -> None:
        """What the items agent writes: catalog records in the store (the events agent reads them on demand)."""
        items = {u.item_id: ItemRecord.from_update(u) for u in updates}
        await self.store.write_batch(WriteBatch(source=self.rt.topics.items, items=items))

    def produce(self, values: Sequence[tuple[str, bytes]]) -> list[RawMessage]:
        """Append ``(user_id, value)`` messages to the events topic; returns them with their offsets."""
        out: list[RawMessage] = []
        for user, value in values:
            p = partition_of(user, self.partitions)
            offset = self._next.get(p, 0)
            self._next[p] = offset + 1
            out.append(RawMessage(self.rt.topics.events, p, offset, user.encode(), value))
        self.log += out
        return out

    async def consume(self, msgs: Sequence[RawMessage]) -> None:
        """One ``take()`` batch through the agent's batch function."""
        await process_batch(self.rt, list(msgs), self.applied, self.table, self.dead)  # type: ignore[arg-type]

    async def consume_in_batches(self, msgs: Sequence[RawMessage], sizes: Iterable[int]) -> None:
        i = 0
        for size in sizes:
            if i >= len(msgs):
                break
            await self.consume(msgs[i : i + max(1, size)])
            i += max(1, size)
        if i < len(msgs):
            await self.consume(msgs[i:])

    def restart(self) -> None:
        """A new worker process: the table is recovered from the changelog, the caches start empty."""
        restored = self.table.recovered()
        self.table = FakeTable()
        self.table.data.update(restored)
        self.table.changelog = [(0, k, v) for k, v in restored.items()]
        self.rt = Runtime(settings=self.settings, store=self.store, clock=self.clock)
        self.rt.local_users = self.table.data
        self.applied = {}

    def user(self, user_id: str) -> UserState | None:
        return self.rt.user_state(user_id)

    def table_bytes(self) -> dict[bytes, bytes]:
        """The table's values, encoded (decoded states re-encoded), for exact comparisons."""
        from state.features import encode_state

        return {k: v if isinstance(v, bytes) else encode_state(v) for k, v in self.table.data.items()}


def wire(event: Event) -> tuple[str, bytes]:
    return event.user_id, encode(event)


def decoded_table(table: dict[bytes, bytes]) -> dict[str, UserState]:
    return {k.decode(): decode_state(v) for k, v in table.items()}
