"""The lag exporter against the real broker: offsets equal the admin API's, lag equals produced minus committed."""

from __future__ import annotations

import asyncio
import time
import urllib.request
from collections.abc import Iterator

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.structs import OffsetAndMetadata
from prometheus_client import CollectorRegistry
from prometheus_client.parser import text_string_to_metric_families

from streams.lag import LagCollector, LagMonitor, LagSnapshot, run_exporter
from streams.metrics import serve_metrics
from streams.settings import Settings
from streams.topics import topic_names
from tests.integration.conftest import drop_topics, fresh_settings

PER_PARTITION = 10
COMMITS = {0: 10, 1: 4, 2: 0}  # partition 3 is never committed
NOW = 2_000_000_000.0  # the monitor's injected clock


@pytest.fixture
def lag_settings(base_settings: Settings) -> Iterator[Settings]:
    settings = fresh_settings(base_settings, "lag")
    try:
        yield settings
    finally:
        drop_topics(settings)


def _ts_ms(base_ms: int, offset: int) -> int:
    return base_ms + offset * 1000


async def _produce(settings: Settings, topic: str, partitions: int, base_ms: int) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=settings.kafka.bootstrap_servers)
    await producer.start()
    try:
        for p in range(partitions):
            for i in range(PER_PARTITION):
                await producer.send(topic, b"x", partition=p, timestamp_ms=_ts_ms(base_ms, i))
        await producer.flush()
    finally:
        await producer.stop()


async def _commit(settings: Settings, group: str, topic: str) -> None:
    consumer = AIOKafkaConsumer(
        bootstrap_servers=settings.kafka.bootstrap_servers, group_id=group, enable_auto_commit=False
    )
    await consumer.start()
    try:
        consumer.assign([TopicPartition(topic, p) for p in COMMITS])
        await consumer.commit({TopicPartition(topic, p): OffsetAndMetadata(o, "") for p, o in COMMITS.items()})
    finally:
        await consumer.stop()


async def _broker_view(
    settings: Settings, group: str, tps: list[TopicPartition]
) -> tuple[dict[TopicPartition, int], dict[TopicPartition, int]]:
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka.bootstrap_servers)
    consumer = AIOKafkaConsumer(bootstrap_servers=settings.kafka.bootstrap_servers)
    await admin.start()
    await consumer.start()
    try:
        committed = {tp: m.offset for tp, m in (await admin.list_consumer_group_offsets(group)).items()}
        ends = await consumer.end_offsets(tps)
    finally:
        await consumer.stop()
        await admin.close()
    return committed, ends


def _scrape(port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as resp:
        return str(resp.read().decode())


async def _scenario(settings: Settings) -> None:
    topic = topic_names(settings.kafka).events
    partitions = settings.kafka.partitions
    if partitions < 4:
        pytest.skip(f"needs at least 4 partitions per topic, settings give {partitions}")
    group = f"{settings.worker.app_id}-lag-test"
    base_ms = int(time.time() * 1000) - 600_000
    await _produce(settings, topic, partitions, base_ms)
    await _commit(settings, group, topic)
    tps = [TopicPartition(topic, p) for p in range(partitions)]
    committed, ends = await _broker_view(settings, group, tps)

    async with LagMonitor(settings.kafka, clock=lambda: NOW) as monitor:
        snap = await monitor.snapshot([group])
    rows = {r.partition: r for r in snap.rows}
    assert sorted(rows) == list(range(partitions))
    for p in range(partitions):
        tp, row = TopicPartition(topic, p), rows[p]
        assert (row.group, row.topic) == (group, topic)
        assert row.committed == committed.get(tp)
        assert row.committed == COMMITS.get(p)
        assert row.end == ends[tp] == PER_PARTITION
        assert row.lag_messages == PER_PARTITION - COMMITS.get(p, 0)
        expected_s = 0.0 if row.lag_messages == 0 else NOW - _ts_ms(base_ms, COMMITS.get(p, 0)) / 1000
        assert row.lag_seconds == pytest.approx(expected_s, abs=1e-6)
    await _exporter_serves(settings, group, topic, snap)


async def _exporter_serves(settings: Settings, group: str, topic: str, expected: LagSnapshot) -> None:
    registry = CollectorRegistry()
    collector = LagCollector(registry)
    stop = asyncio.Event()
    polls: list[LagSnapshot | None] = []

    def on_poll(snap: LagSnapshot | None) -> None:
        polls.append(snap)
        stop.set()

    async with LagMonitor(settings.kafka) as monitor:
        await run_exporter(monitor, collector, [group], interval_s=60.0, stop=stop, on_poll=on_poll)
    assert polls and polls[0] is not None
    labels = {"group": group, "topic": topic, "partition": "1"}
    assert registry.get_sample_value("streamrec_consumer_lag_messages", labels) == 6.0
    assert registry.get_sample_value("streamrec_consumer_committed_offset", labels) == 4.0
    assert registry.get_sample_value("streamrec_lag_exporter_up") == 1.0
    with serve_metrics(registry, 0) as server:
        text = _scrape(server.port)
    scraped = {
        (s.name, s.labels.get("partition")): s.value
        for fam in text_string_to_metric_families(text)
        for s in fam.samples
        if s.labels.get("group") == group
    }
    assert scraped[("streamrec_consumer_end_offset", "3")] == 10.0
    assert ("streamrec_consumer_committed_offset", "3") not in scraped  # never committed
    assert [r.lag_messages for r in polls[0].rows] == [r.lag_messages for r in expected.rows]


def test_lag_matches_the_broker(lag_settings: Settings) -> None:
    asyncio.run(_scenario(lag_settings))
