"""The floor for request/reply latency: a bare aiokafka consume -> produce echo, no Faust, no work."""

from __future__ import annotations

import asyncio
import time

import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from streams.settings import load_settings
from streams.topics import topic_names


async def echo_forever() -> None:
    """Answer every request on the prefixed rec-requests topic with an empty response, immediately."""
    settings = load_settings()
    names = topic_names(settings.kafka)
    servers = settings.kafka.bootstrap_servers
    producer = AIOKafkaProducer(bootstrap_servers=servers, linger_ms=0, acks=1)
    consumer = AIOKafkaConsumer(bootstrap_servers=servers, enable_auto_commit=False, fetch_max_wait_ms=100)
    await producer.start()
    await consumer.start()
    try:
        parts = await producer.partitions_for(names.rec_requests)
        consumer.assign([TopicPartition(names.rec_requests, p) for p in sorted(parts)])
        while True:
            batches = await consumer.getmany(timeout_ms=100)
            for records in batches.values():
                for rec in records:
                    req = orjson.loads(rec.value or b"{}")
                    reply = {
                        "correlation_id": req.get("correlation_id", ""),
                        "user_id": req.get("user_id"),
                        "served_at": time.time(),
                        "model_version": "echo",
                    }
                    await producer.send(
                        names.rec_responses, orjson.dumps(reply), key=rec.key and req["correlation_id"].encode()
                    )
    finally:
        await consumer.stop()
        await producer.stop()


if __name__ == "__main__":
    asyncio.run(echo_forever())
