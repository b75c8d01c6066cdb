"""The reply and impression producers over the real broker: replies arrive with their keys while the app's
producer is busy; impressions share produce requests and all arrive."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator

import faust
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from agents.replies import ImpressionProducer, ReplyProducer
from streams.settings import Settings
from streams.topics import topic_names
from tests.integration.conftest import drop_topics, fresh_settings


async def _read(consumer: AIOKafkaConsumer, n: int, timeout_s: float = 20.0) -> list[tuple[bytes | None, bytes | None]]:
    """``(key, value)`` of the records the consumer reads, until ``n`` of them or the timeout."""
    got: list[tuple[bytes | None, bytes | None]] = []
    end = time.monotonic() + timeout_s
    while len(got) < n and time.monotonic() < end:
        for records in (await consumer.getmany(timeout_ms=500)).values():
            got += [(r.key, r.value) for r in records]
    return got


async def _replies_arrive(settings: Settings) -> list[tuple[bytes | None, bytes | None]]:
    topic = topic_names(settings.kafka).rec_responses
    servers = settings.kafka.bootstrap_servers
    app = faust.App(settings.worker.app_id, broker=f"kafka://{servers}")
    replies = ReplyProducer(app, settings)
    bulk = AIOKafkaProducer(bootstrap_servers=servers, linger_ms=0)  # stands in for impressions and changelogs
    consumer = AIOKafkaConsumer(bootstrap_servers=servers, enable_auto_commit=False, auto_offset_reset="earliest")
    await replies.start()
    await bulk.start()
    await consumer.start()
    try:
        parts = await bulk.partitions_for(topic)
        consumer.assign([TopicPartition(topic, p) for p in sorted(parts)])
        impressions = topic_names(settings.kafka).impressions
        for i in range(20):
            await bulk.send(impressions, b"x" * 50_000)  # a busy shared producer
            await replies.send(topic, f"c{i}".encode(), f"reply-{i}".encode())
        got = await _read(consumer, 20)
        assert replies.failed == 0
        return got
    finally:
        await consumer.stop()
        await bulk.stop()
        await replies.stop()


@pytest.fixture
def settings(base_settings: Settings) -> Iterator[Settings]:
    """Fresh topics for one test, dropped afterwards."""
    fresh = fresh_settings(base_settings, "reply-producer")
    try:
        yield fresh
    finally:
        drop_topics(fresh)


def test_replies_go_out_on_their_own_producer_with_their_keys(settings: Settings) -> None:
    got = asyncio.run(_replies_arrive(settings))
    assert sorted(got) == sorted((f"c{i}".encode(), f"reply-{i}".encode()) for i in range(20))


async def _left_in_accumulator(settings: Settings) -> list[int]:
    """Batches still waiting in the producer's accumulator right after each ``send`` returns."""
    topic = topic_names(settings.kafka).rec_responses
    app = faust.App(settings.worker.app_id, broker=f"kafka://{settings.kafka.bootstrap_servers}")
    replies = ReplyProducer(app, settings)
    await replies.start()
    try:
        waiting = []
        for i in range(10):
            await replies.send(topic, f"c{i}".encode(), b"reply")
            assert replies._producer is not None
            batches = replies._producer._message_accumulator._batches  # aiokafka's pending batches per partition
            waiting.append(sum(len(q) for q in batches.values()))
            await replies._producer.flush()  # acknowledged, as a previous reply usually is: one request in flight
        return waiting
    finally:
        await replies.stop()


def test_a_reply_is_on_the_wire_when_send_returns(settings: Settings) -> None:
    """The caller's bookkeeping after ``send`` must not hold the reply back: the sender has drained it."""
    waiting = asyncio.run(_left_in_accumulator(settings))
    assert waiting == [0] * 10


async def _impressions_batched(settings: Settings) -> tuple[int, list[tuple[bytes | None, bytes | None]]]:
    """Batches waiting right after ten impressions are handed over, and what a consumer then reads."""
    topic = topic_names(settings.kafka).impressions
    servers = settings.kafka.bootstrap_servers
    app = faust.App(settings.worker.app_id, broker=f"kafka://{servers}")
    impressions = ImpressionProducer(app, settings)
    consumer = AIOKafkaConsumer(bootstrap_servers=servers, enable_auto_commit=False, auto_offset_reset="earliest")
    await impressions.start()
    await consumer.start()
    try:
        assert impressions._producer is not None
        parts = await impressions._producer.partitions_for(topic)
        consumer.assign([TopicPartition(topic, p) for p in sorted(parts)])
        for i in range(10):
            await impressions.send(topic, f"u{i}".encode() if i else None, f"imp-{i}".encode())
        batches = impressions._producer._message_accumulator._batches  # aiokafka's pending batches per partition
        waiting = sum(len(q) for q in batches.values())
        got = await _read(consumer, 10)
        assert impressions.failed == 0
        return waiting, got
    finally:
        await consumer.stop()
        await impressions.stop()


def test_impressions_linger_to_share_produce_requests_and_all_arrive(settings: Settings) -> None:
    waiting, got = asyncio.run(_impressions_batched(settings))
    assert 0 < waiting <= settings.kafka.partitions  # ten impressions wait in at most one batch a partition
    want = [(f"u{i}".encode() if i else None, f"imp-{i}".encode()) for i in range(10)]
    assert sorted(got, key=lambda kv: kv[1] or b"") == want
