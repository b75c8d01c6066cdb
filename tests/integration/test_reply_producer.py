"""The reply producer over the real broker: replies arrive with their keys while the app's producer is busy."""

from __future__ import annotations

import asyncio
import time

import faust
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from agents.replies import ReplyProducer
from streams.settings import Settings
from streams.topics import topic_names
from tests.integration.conftest import drop_topics, fresh_settings


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
        got: list[tuple[bytes | None, bytes | None]] = []
        end = time.monotonic() + 20.0
        while len(got) < 20 and time.monotonic() < end:
            for records in (await consumer.getmany(timeout_ms=500)).values():
                got += [(r.key, r.value) for r in records]
        assert replies.failed == 0
        return got
    finally:
        await consumer.stop()
        await bulk.stop()
        await replies.stop()


def test_replies_go_out_on_their_own_producer_with_their_keys(base_settings: Settings) -> None:
    settings = fresh_settings(base_settings, "reply-producer")
    try:
        got = asyncio.run(_replies_arrive(settings))
    finally:
        drop_topics(settings)
    assert sorted(got) == sorted((f"c{i}".encode(), f"reply-{i}".encode()) for i in range(20))
