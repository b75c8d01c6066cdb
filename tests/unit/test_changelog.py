"""Bulk changelog writes: one record batch per partition, same records and order, a fallback without a producer."""

from __future__ import annotations

from typing import Any

import pytest

from agents.changelog import ChangelogWriter, running_producer


class FakeBuilder:
    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self.rows: list[tuple[bytes, bytes]] = []

    def append(self, *, key: bytes, value: bytes, timestamp: float | None) -> object | None:
        if sum(len(k) + len(v) for k, v in self.rows) + len(key) + len(value) > self.capacity:
            return None
        self.rows.append((key, value))
        return object()


class FakeAioProducer:
    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self.sent: list[tuple[str, int, list[tuple[bytes, bytes]]]] = []

    def create_batch(self) -> FakeBuilder:
        return FakeBuilder(self.capacity)

    async def send_batch(self, batch: FakeBuilder, topic: str, *, partition: int) -> None:
        self.sent.append((topic, partition, batch.rows))


class FakeTopic:
    def get_topic_name(self) -> str:
        return "app-users-changelog"


class FakeTable:
    changelog_topic = FakeTopic()

    def __init__(self) -> None:
        self.sends: list[tuple[int, bytes, bytes]] = []

    def send_changelog(self, partition: int, key: bytes, value: bytes) -> None:
        self.sends.append((partition, key, value))


class FakeApp:
    def __init__(self, inner: Any) -> None:
        self._producer = type("FaustProducer", (), {"_producer": inner})()


RECORDS = [(1, b"u1", b"s1"), (0, b"u2", b"s2"), (1, b"u3", b"s3"), (0, b"u4", b"s4")]


async def test_records_go_out_as_one_batch_per_partition_in_order() -> None:
    inner = FakeAioProducer(capacity=1 << 20)
    await ChangelogWriter(FakeApp(inner), FakeTable()).write(RECORDS)
    assert inner.sent == [
        ("app-users-changelog", 1, [(b"u1", b"s1"), (b"u3", b"s3")]),
        ("app-users-changelog", 0, [(b"u2", b"s2"), (b"u4", b"s4")]),
    ]


async def test_a_full_batch_is_sent_and_a_new_one_started() -> None:
    inner = FakeAioProducer(capacity=9)  # room for two 4-byte records per batch
    records = [(0, f"k{i}".encode(), f"v{i}".encode()) for i in range(5)]
    await ChangelogWriter(FakeApp(inner), FakeTable()).write(records)
    assert [len(rows) for _, _, rows in inner.sent] == [2, 2, 1]
    assert [kv for _, _, rows in inner.sent for kv in rows] == [(k, v) for _, k, v in records]


async def test_a_record_larger_than_a_batch_is_an_error() -> None:
    inner = FakeAioProducer(capacity=3)
    with pytest.raises(ValueError, match="exceeds the producer batch size"):
        await ChangelogWriter(FakeApp(inner), FakeTable()).write([(0, b"key", b"value")])


async def test_without_a_running_producer_it_falls_back_to_send_changelog() -> None:
    table = FakeTable()
    await ChangelogWriter(FakeApp(None), table).write(RECORDS)
    await ChangelogWriter(None, table).write(RECORDS[:1])
    assert table.sends == [*RECORDS, RECORDS[0]]
    assert running_producer(object()) is None
