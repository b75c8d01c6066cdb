"""Table changelog writes in bulk: one record batch per partition per consumer batch, not one send per user.

Faust's ``Table.send_changelog`` costs tens of microseconds of Python per record (a pending message, a
future, a callback, a buffer hop, then one ``AIOKafkaProducer.send``).  The events agent writes one
changelog record per changed user per batch, so that cost is paid per event.  Here the records of a
batch are appended to one aiokafka ``BatchBuilder`` per partition and handed over with ``send_batch``.

The records are the same (topic, partition, key, value) that ``send_changelog`` would produce, so
recovery is untouched.  Durability is too: they go through the app's own aiokafka producer, which the
consumer flushes before every offset commit, exactly as with ``send_changelog``.  Where that producer
is not running (Faust's test context), the writer falls back to ``send_changelog``.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

log = logging.getLogger(__name__)

Record = tuple[int, bytes, bytes]  # (partition, key, value)


def running_producer(app: Any) -> Any | None:
    """The app's started aiokafka producer, or None (not started, or not the aiokafka driver)."""
    producer = getattr(app, "_producer", None)  # do not create one: only a started app has a real producer
    inner = getattr(producer, "_producer", None) if producer is not None else None
    if inner is None or not hasattr(inner, "create_batch") or not hasattr(inner, "send_batch"):
        return None
    return inner


def by_partition(records: Sequence[Record]) -> dict[int, list[tuple[bytes, bytes]]]:
    """Group records per partition, keeping their order within each partition.

    >>> by_partition([(1, b"a", b"1"), (0, b"b", b"2"), (1, b"c", b"3")])
    {1: [(b'a', b'1'), (b'c', b'3')], 0: [(b'b', b'2')]}
    """
    out: dict[int, list[tuple[bytes, bytes]]] = {}
    for partition, key, value in records:
        out.setdefault(partition, []).append((key, value))
    return out


class ChangelogWriter:
    """Writes a batch's (partition, key, value) changelog records for ``table`` in bulk."""

    def __init__(self, app: Any, table: Any) -> None:
        self.app = app
        self.table = table

    async def write(self, records: Sequence[Record]) -> None:
        """Queue ``records`` for the changelog; returns once they are handed to the producer (not acked)."""
        if not records:
            return
        producer = running_producer(self.app)
        if producer is None:
            for partition, key, value in records:
                self.table.send_changelog(partition, key, value)
            return
        topic = self.table.changelog_topic.get_topic_name()
        for partition, rows in by_partition(records).items():
            await _send_partition(producer, topic, partition, rows)


async def _send_partition(producer: Any, topic: str, partition: int, rows: list[tuple[bytes, bytes]]) -> None:
    batch = producer.create_batch()
    for key, value in rows:
        if batch.append(key=key, value=value, timestamp=None) is None:  # full: ship it, start another
            await producer.send_batch(batch, topic, partition=partition)
            batch = producer.create_batch()
            if batch.append(key=key, value=value, timestamp=None) is None:
                raise ValueError(f"changelog record of {len(value)} bytes exceeds the producer batch size")
    await producer.send_batch(batch, topic, partition=partition)
