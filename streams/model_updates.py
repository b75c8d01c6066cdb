"""The ``model-updates`` control topic at the Kafka edge: publish a registry change; read them all, without a group."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from datetime import UTC, datetime

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.errors import KafkaError

from streams.admin import partitions_of
from streams.codec import encode, load_json, validate
from streams.errors import DecodeError, InfraError
from streams.records import ModelAction, ModelUpdate
from streams.settings import KafkaSettings, ValidationSettings
from streams.topics import topic_names

log = logging.getLogger(__name__)


def model_update(version: str, action: ModelAction, now: float) -> ModelUpdate:
    """The record announcing ``action`` on ``version`` at wall-clock ``now``.

    >>> model_update("v0002", "promote", 0.0).ts.isoformat()
    '1970-01-01T00:00:00+00:00'
    """
    return ModelUpdate(version=version, action=action, ts=datetime.fromtimestamp(now, UTC))


def decode_update(raw: bytes | None, limits: ValidationSettings | None = None) -> ModelUpdate:
    """A control-topic value as a record; raises ``DecodeError`` naming what is wrong."""
    return validate(ModelUpdate, load_json(raw, limits or ValidationSettings()))


async def publish_update(kafka: KafkaSettings, update: ModelUpdate, timeout_s: float) -> None:
    """Produce ``update`` to the control topic and wait for the broker's acknowledgement.

    Raises ``InfraError`` when Kafka cannot be reached or does not acknowledge within ``timeout_s``.
    """
    topic = topic_names(kafka).model_updates
    producer = AIOKafkaProducer(
        bootstrap_servers=kafka.bootstrap_servers,
        client_id=kafka.client_id,
        request_timeout_ms=int(timeout_s * 1000),
        acks="all",
    )
    try:
        async with asyncio.timeout(timeout_s):
            await producer.start()
            await producer.send_and_wait(topic, encode(update), key=update.version.encode())
    except (KafkaError, TimeoutError, OSError) as exc:
        raise InfraError(
            f"could not publish {update.action} {update.version} to {topic} on {kafka.bootstrap_servers}: "
            f"{type(exc).__name__} {exc}"
        ) from exc
    finally:
        try:
            await producer.stop()
        except (KafkaError, OSError) as exc:  # stopping a producer that never connected
            log.debug("producer stop: %s", exc)


async def follow_updates(kafka: KafkaSettings, *, from_end: bool = True) -> AsyncIterator[ModelUpdate]:
    """Every update appended to the control topic from now on (``from_end``) or from its start.

    No consumer group and no commits: each worker reads the whole topic itself, so every worker sees
    every update. Undecodable values are logged and skipped (nothing on this topic is worth a stall).
    """
    topic = topic_names(kafka).model_updates
    consumer = AIOKafkaConsumer(bootstrap_servers=kafka.bootstrap_servers, enable_auto_commit=False, group_id=None)
    try:
        parts = [TopicPartition(topic, p) for p in await partitions_of(kafka, topic)]  # InfraError if missing
        await consumer.start()
        consumer.assign(parts)
        await (consumer.seek_to_end(*parts) if from_end else consumer.seek_to_beginning(*parts))
        while True:
            for records in (await consumer.getmany(timeout_ms=1000)).values():
                for rec in records:
                    try:
                        yield decode_update(rec.value)
                    except DecodeError as exc:
                        log.warning("%s offset %d: skipped: %s", topic, rec.offset, exc)
    except KafkaError as exc:
        raise InfraError(f"reading {topic} on {kafka.bootstrap_servers}: {type(exc).__name__} {exc}") from exc
    finally:
        await consumer.stop()
