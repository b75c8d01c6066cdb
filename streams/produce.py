"""Produce JSON lines to Kafka at an optional target rate, keyed for co-partitioning."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterable

import orjson
from aiokafka import AIOKafkaProducer

KEY_FIELDS = ("user_id", "item_id", "correlation_id")


def key_of(line: bytes, fields: tuple[str, ...] = KEY_FIELDS) -> bytes | None:
    """The partitioning key of a JSON line: its first present id field (None if not JSON).

    >>> key_of(b'{"user_id": "u7", "item_id": "i1"}')
    b'u7'
    >>> key_of(b'not json') is None
    True
    """
    try:
        obj = orjson.loads(line)
    except orjson.JSONDecodeError:
        return None
    if isinstance(obj, dict):
        for f in fields:
            v = obj.get(f)
            if isinstance(v, str) and v:
                return v.encode()
    return None


async def paced(lines: Iterable[bytes], rate: float | None) -> AsyncIterator[bytes]:
    """Yield lines no faster than ``rate`` per second (all at once when rate is None)."""
    start = time.perf_counter()
    for i, line in enumerate(lines):
        if rate:
            ahead = i / rate - (time.perf_counter() - start)
            if ahead > 0.002:
                await asyncio.sleep(ahead)
        elif i % 5000 == 0:
            await asyncio.sleep(0)
        yield line


async def produce_lines(bootstrap: str, topic: str, lines: Iterable[bytes], *, rate: float | None = None) -> int:
    """Send every non-empty line; return the count. Waits until the broker acknowledged all of them."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=5, acks=1, max_batch_size=262_144)
    await producer.start()
    n = 0
    try:
        futures = []
        async for line in paced((ln.strip() for ln in lines if ln.strip()), rate):
            futures.append(await producer.send(topic, line, key=key_of(line)))
            n += 1
            if len(futures) >= 20_000:
                await asyncio.gather(*futures)
                futures.clear()
        await producer.flush()
        await asyncio.gather(*futures)
    finally:
        await producer.stop()
    return n
