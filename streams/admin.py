"""Topic administration against the real broker: create streamrec's topics idempotently."""

from __future__ import annotations

import asyncio

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import KafkaConnectionError, KafkaError, TopicAlreadyExistsError

from streams.errors import InfraError
from streams.settings import KafkaSettings, Settings
from streams.topics import TopicSpec, run_topics, topic_specs


async def _admin(kafka: KafkaSettings, attempts: int = 40) -> AIOKafkaAdminClient:
    last: Exception | None = None
    for _ in range(attempts):
        admin = AIOKafkaAdminClient(bootstrap_servers=kafka.bootstrap_servers, client_id=kafka.client_id)
        try:
            await admin.start()
            return admin
        except KafkaConnectionError as exc:
            last = exc
            await admin.close()
            await asyncio.sleep(0.5)
    raise InfraError(f"Kafka at {kafka.bootstrap_servers} is unreachable: {last}") from last


async def ensure_topics(kafka: KafkaSettings, specs: list[TopicSpec] | None = None) -> list[str]:
    """Create every missing topic; return the names created (existing ones are left as they are)."""
    specs = specs if specs is not None else topic_specs(kafka)
    admin = await _admin(kafka)
    try:
        existing = set(await admin.list_topics())
        missing = [s for s in specs if s.name not in existing]
        if missing:
            new = [NewTopic(s.name, s.partitions, s.replication_factor, topic_configs=dict(s.config)) for s in missing]
            try:
                await admin.create_topics(new, timeout_ms=30_000)
            except TopicAlreadyExistsError:
                pass  # created concurrently by another worker: the desired end state
            except KafkaError as exc:
                raise InfraError(f"creating topics {[s.name for s in missing]} failed: {exc}") from exc
        return [s.name for s in missing]
    finally:
        await admin.close()


async def delete_topics(kafka: KafkaSettings, names: list[str]) -> None:
    """Delete topics (tests and benchmarks clean up their prefixed topics)."""
    admin = await _admin(kafka)
    try:
        existing = set(await admin.list_topics())
        doomed = [n for n in names if n in existing]
        if doomed:
            await admin.delete_topics(doomed, timeout_ms=30_000)
    finally:
        await admin.close()


async def drop_run_topics(settings: Settings) -> None:
    """Delete every topic a run (a test, a benchmark, the demo, a replay) created, Faust's own included."""
    await delete_topics(settings.kafka, run_topics(settings))


async def partitions_of(kafka: KafkaSettings, topic: str) -> list[int]:
    """Partition ids of ``topic`` (a consumer without a subscription does not learn them by itself)."""
    admin = await _admin(kafka)
    try:
        described = await admin.describe_topics([topic])
    finally:
        await admin.close()
    parts = [p["partition"] for d in described if d.get("topic") == topic for p in d.get("partitions", [])]
    if not parts:
        raise InfraError(f"topic {topic!r} does not exist on {kafka.bootstrap_servers}")
    return sorted(parts)
