"""Integration tier: a real Kafka broker and Redis server (``make up``); each test module gets fresh topics."""

from __future__ import annotations

import asyncio
import os
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition

from streams.admin import drop_run_topics, ensure_topics, partitions_of
from streams.bench.harness import WorkerProcess, isolated, wait_until_serving
from streams.client import RecClient
from streams.settings import Settings, load_settings

LOGS = Path(".run/test-logs")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "tests/integration" in str(item.path):
            item.add_marker(pytest.mark.integration)


def _reachable(hostport: str) -> bool:
    host, _, port = hostport.split(",", maxsplit=1)[0].rpartition(":")
    try:
        with socket.create_connection((host, int(port)), timeout=1.0):
            return True
    except OSError:
        return False


@pytest.fixture(scope="session")
def base_settings() -> Settings:
    settings = load_settings()
    if not _reachable(settings.kafka.bootstrap_servers):
        msg = f"Kafka is not reachable at {settings.kafka.bootstrap_servers}: run `make up` (or `make test`)"
        if os.environ.get("CI"):
            pytest.fail(msg)
        pytest.skip(msg)
    return settings


def fresh_settings(base: Settings, tag: str, serving: dict[str, object] | None = None, **worker: object) -> Settings:
    settings = isolated(base, tag, **worker)
    if serving:
        settings = settings.model_copy(update={"serving": settings.serving.model_copy(update=serving)})
    asyncio.run(ensure_topics(settings.kafka))
    return settings


def drop_topics(settings: Settings) -> None:
    asyncio.run(drop_run_topics(settings))


@pytest.fixture(scope="module")
def running_worker(base_settings: Settings, request: pytest.FixtureRequest) -> Iterator[tuple[Settings, WorkerProcess]]:
    """One worker for the module, on fresh topics, answering requests before the tests start."""
    serving = getattr(request.module, "SERVING", None)  # a module may pin serving settings (e.g. no exploration)
    settings = fresh_settings(base_settings, request.module.__name__.rsplit(".", 1)[-1].replace("_", "-"), serving)
    worker = WorkerProcess(settings, LOGS / f"{settings.worker.app_id}.log").start()
    try:
        asyncio.run(wait_serving(settings, worker))
        yield settings, worker
    finally:
        worker.stop()
        drop_topics(settings)


async def wait_serving(settings: Settings, worker: WorkerProcess) -> None:
    """Until ``worker`` answers a request (a client of its own, closed afterwards)."""
    async with RecClient(settings) as client:
        await wait_until_serving(client, worker)


async def read_topic(
    settings: Settings, topic: str, n: int, timeout_s: float = 20.0
) -> list[tuple[bytes | None, bytes]]:
    """The first ``n`` records of ``topic`` (all partitions, from the beginning), or fewer on timeout."""
    tps = [TopicPartition(topic, p) for p in await partitions_of(settings.kafka, topic)]
    consumer = AIOKafkaConsumer(bootstrap_servers=settings.kafka.bootstrap_servers, enable_auto_commit=False)
    await consumer.start()
    out: list[tuple[bytes | None, bytes]] = []
    try:
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        loop = asyncio.get_running_loop()
        end = loop.time() + timeout_s
        while len(out) < n and loop.time() < end:
            for recs in (await consumer.getmany(timeout_ms=200)).values():
                out.extend((r.key, r.value or b"") for r in recs)
    finally:
        await consumer.stop()
    return out
