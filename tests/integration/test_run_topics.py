"""A run's clean-up drops every topic it created, the ones Faust creates for its app included."""

from __future__ import annotations

import asyncio

from aiokafka.admin import AIOKafkaAdminClient

from streams.admin import drop_run_topics
from streams.bench.harness import WorkerProcess
from streams.settings import Settings
from streams.topics import app_topics
from tests.integration.conftest import LOGS, fresh_settings, wait_serving


async def _topics_of(settings: Settings) -> set[str]:
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka.bootstrap_servers)
    await admin.start()
    try:
        run = settings.worker.app_id
        return {t for t in await admin.list_topics() if t.startswith(run)}
    finally:
        await admin.close()


def test_dropping_a_run_leaves_none_of_its_topics(base_settings: Settings) -> None:
    settings = fresh_settings(base_settings, "run-topics")
    worker = WorkerProcess(settings, LOGS / f"{settings.worker.app_id}.log").start()
    try:
        asyncio.run(wait_serving(settings, worker))
    finally:
        worker.stop()
    try:
        assert set(app_topics(settings.worker.app_id)) <= asyncio.run(_topics_of(settings))  # Faust made them
    finally:
        asyncio.run(drop_run_topics(settings))
    assert asyncio.run(_topics_of(settings)) == set()
