"""The direct request consumer with the real request handler, fed by a fake record consumer (no broker)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import orjson
import pytest
from aiokafka import TopicPartition
from aiokafka.structs import ConsumerRecord, OffsetAndMetadata
from faust.types import TP

from agents.request_consumer import RequestConsumer
from agents.runtime import Runtime
from agents.serve import RequestHandler
from state.memory_store import MemoryFeatureStore
from streams.app import create_app
from streams.clock import FakeClock
from streams.records import DeadLetter, RecommendResponse
from streams.settings import load_settings
from tests.functional.captured import capture_sends

NOW = datetime(2026, 11, 24, 12, 0, tzinfo=UTC)


class FakeRecords:
    """Records per partition; ``getone`` returns the next one of an assigned partition, in offset order."""

    def __init__(self) -> None:
        self.log: dict[TopicPartition, list[bytes]] = {}
        self.position: dict[TopicPartition, int] = {}
        self.assigned: list[TopicPartition] = []
        self.commits: list[dict[TopicPartition, int]] = []
        self.arrived = asyncio.Event()
        self.started = self.stopped = False

    def append(self, tp: TopicPartition, value: bytes) -> None:
        self.log.setdefault(tp, []).append(value)
        self.arrived.set()

    async def start(self) -> None:
        self.started = True

    async def stop(self) -> None:
        self.stopped = True

    def assign(self, partitions: list[TopicPartition]) -> None:
        self.assigned = list(partitions)
        for tp in partitions:  # resume after the last commit, as a group's consumer does
            self.position[tp] = max([c[tp] for c in self.commits if tp in c], default=0)
        self.arrived.set()  # a waiting getone looks at the new partitions

    async def getone(self) -> Any:
        while True:
            for tp in self.assigned:
                at = self.position.get(tp, 0)
                if at < len(self.log.get(tp, [])):
                    self.position[tp] = at + 1
                    value = self.log[tp][at]
                    return ConsumerRecord(tp.topic, tp.partition, at, 0, 0, b"k", value, None, 1, len(value), ())
            self.arrived.clear()
            await self.arrived.wait()

    async def commit(self, offsets: dict[TopicPartition, OffsetAndMetadata]) -> None:
        self.commits.append({tp: om.offset for tp, om in offsets.items()})


@pytest.fixture
async def runtime() -> AsyncIterator[Runtime]:
    settings = load_settings(worker={"app_id": "direct", "store": "memory", "commit_interval_s": 1.0})
    clock = FakeClock(NOW.timestamp())
    rt = Runtime(settings=settings, store=MemoryFeatureStore(clock=clock), clock=clock)
    rt.popular = [("i1", 3.0), ("i2", 2.0), ("i3", 1.0)]
    yield rt


def request(cid: str) -> bytes:
    return orjson.dumps({"correlation_id": cid, "user_id": "bob", "k": 2})


async def answered(consumer: RequestConsumer, n: int) -> None:
    async with asyncio.timeout(5):
        while consumer.answered < n:  # noqa: ASYNC110 - polls the consumer's counter
            await asyncio.sleep(0.01)


async def test_requests_of_the_followed_partitions_are_answered_in_order_and_committed_once_answered(
    runtime: Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    sent = capture_sends(monkeypatch)
    app = create_app(runtime.settings, runtime)
    app.finalize()
    handler = RequestHandler(app, runtime)
    now = [0.0]
    records = FakeRecords()
    consumer = RequestConsumer(runtime.settings, handler, consumer=records, clock=lambda: now[0])
    topics = runtime.topics
    p0, p1 = TopicPartition(topics.rec_requests, 0), TopicPartition(topics.rec_requests, 1)
    await consumer.follow([TP(topics.events, 1), TP(topics.items, 0)])  # before start: assigned on start
    await consumer.start()
    assert records.started and records.assigned == [p1]
    records.append(p0, request("other-worker"))  # partition 0 is not this worker's: never answered
    for cid in ("a", "b"):
        records.append(p1, request(cid))
    await answered(consumer, 2)
    replies = [RecommendResponse.model_validate_json(v) for t, v in sent if t == topics.rec_responses]
    assert [r.correlation_id for r in replies] == ["a", "b"]
    assert [it.item_id for it in replies[0].items] == ["i1", "i2"]
    assert records.commits == []  # within the commit interval
    now[0] = 1.5
    records.append(p1, b"{broken")  # a dead letter is answered too: its offset is committed
    await answered(consumer, 3)
    assert records.commits == [{p1: 3}]
    letters = [DeadLetter.model_validate_json(v) for t, v in sent if t == topics.dead_letters]
    assert [(d.reason, d.partition, d.offset) for d in letters] == [("not_json", 1, 2)]
    await consumer.stop()
    assert records.stopped and records.commits == [{p1: 3}]  # nothing new to commit on stop


async def test_a_new_assignment_commits_what_was_answered_and_resumes_every_partition_where_it_was_left(
    runtime: Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    capture_sends(monkeypatch)
    app = create_app(runtime.settings, runtime)
    app.finalize()
    records = FakeRecords()
    consumer = RequestConsumer(runtime.settings, RequestHandler(app, runtime), consumer=records, clock=lambda: 0.0)
    topics = runtime.topics
    p0, p1 = TopicPartition(topics.rec_requests, 0), TopicPartition(topics.rec_requests, 1)
    await consumer.start()
    await consumer.follow([TP(topics.events, 0), TP(topics.events, 1)])
    records.append(p0, request("a"))
    await answered(consumer, 1)
    await consumer.follow([TP(topics.events, 1)])  # partition 0 moves to another worker
    assert records.commits == [{p0: 1}] and records.assigned == [p1]
    records.append(p0, request("b"))
    records.append(p1, request("c"))
    await answered(consumer, 2)
    await consumer.follow([TP(topics.events, 0), TP(topics.events, 1)])  # and comes back
    await answered(consumer, 3)  # "b", which waited on partition 0, after its last commit; "c" is not repeated
    await consumer.stop()
    assert records.commits == [{p0: 1}, {p1: 1}, {p0: 2}]


async def test_a_handler_failure_is_logged_and_the_loop_answers_the_next_requests(
    runtime: Runtime, caplog: pytest.LogCaptureFixture
) -> None:
    seen: list[bytes] = []

    async def handler(record: Any) -> None:
        if record.value == b"boom":
            raise RuntimeError("producer closed")
        seen.append(record.value)

    records = FakeRecords()
    consumer = RequestConsumer(runtime.settings, handler, consumer=records, clock=lambda: 0.0)
    p0 = TopicPartition(runtime.topics.rec_requests, 0)
    await consumer.start()
    await consumer.follow([TP(runtime.topics.events, 0)])
    for value in (b"a", b"boom", b"b"):
        records.append(p0, value)
    await answered(consumer, 3)
    await consumer.stop()
    assert seen == [b"a", b"b"] and records.commits == [{p0: 3}]
    assert f"request at {p0.topic}[0]@1 not answered" in caplog.text


async def test_revoked_partitions_are_committed_and_no_longer_answered_until_assigned_again(
    runtime: Runtime,
) -> None:
    seen: list[bytes] = []

    async def handler(record: Any) -> None:
        seen.append(record.value)

    records = FakeRecords()
    consumer = RequestConsumer(runtime.settings, handler, consumer=records, clock=lambda: 0.0)
    events, p0 = runtime.topics.events, TopicPartition(runtime.topics.rec_requests, 0)
    await consumer.start()
    await consumer.follow([TP(events, 0)])
    records.append(p0, b"a")
    await answered(consumer, 1)
    await consumer.give_up([TP(events, 0), TP(runtime.topics.items, 0)])  # a rebalance starts
    assert records.commits == [{p0: 1}] and records.assigned == []
    records.append(p0, b"b")
    await asyncio.sleep(0.05)
    assert seen == [b"a"]  # nothing answered while the partition is not this worker's
    await consumer.follow([TP(events, 0)])  # and it comes back
    await answered(consumer, 2)
    await consumer.stop()
    assert seen == [b"a", b"b"] and records.commits == [{p0: 1}, {p0: 2}]
