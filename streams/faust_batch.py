"""Batch topics: a topic's messages go from Faust's fetch loop into one buffer, taken whole by one task.

A Faust stream costs tens of microseconds of Python per message before an agent sees it (an ``Event``
built and decoded, a queue hop, the stream's iteration and processors, one ack each), about a quarter of
an events worker's CPU.  The events agent only ever wants batches of raw bytes, so its topic is a
:class:`BatchTopic`: :class:`BatchConductor` compiles, for that topic's partitions, a handler that
appends the consumer's message to a :class:`BatchBuffer` and returns.  Everything else stays Faust's:
group membership and assignment (the topic is subscribed like any other, so co-partitioning with the
table holds), table recovery before delivery (the handler waits on the app's flow control like Faust's
own), offset commits (each message is tracked and acked through the consumer as a stream would), and
rebalances (the buffer is registered with the app's flow control, which clears it when a rebalance
ends, and messages of an older consumer generation are dropped unacked, as Faust's streams skip them).

Backpressure is Faust's too: at ``high_water`` buffered messages the partitions that filled it leave the
fetcher's active set (``Consumer.on_buffer_full``) and come back (``on_buffer_drop``) when a take leaves
fewer than half.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable
from typing import Any

import faust
from faust.transport.conductor import Conductor
from faust.types import TP, Message


class BatchTopic(faust.Topic):
    """A topic whose messages are delivered to :attr:`buffer` instead of a stream queue."""

    buffer: BatchBuffer

    def __init__(self, app: faust.App, name: str, buffer: BatchBuffer) -> None:
        super().__init__(app, topics=[name])
        self.buffer = buffer


class BatchBuffer:
    """Messages waiting for the consuming task, with Faust's per-partition fetch backpressure."""

    def __init__(self, high_water: int, *, pause: Callable[[TP], None], resume: Callable[[TP], None]) -> None:
        self.high_water = high_water
        self._pause, self._resume = pause, resume
        self._pending: list[Message] = []
        self._paused: set[TP] = set()
        self._ready = asyncio.Event()

    def __len__(self) -> int:
        return len(self._pending)

    def put(self, message: Message, tp: TP) -> None:
        """Buffer ``message`` of ``tp`` (Faust's own ``TP``, which the consumer's partition sets require)."""
        self._pending.append(message)
        self._ready.set()
        if len(self._pending) >= self.high_water and tp not in self._paused:
            self._paused.add(tp)
            self._pause(tp)

    def take_now(self, max_n: int) -> list[Message]:
        """Up to ``max_n`` of the oldest buffered messages (maybe none), without waiting."""
        batch = self._pending[:max_n]
        del self._pending[:max_n]
        if not self._pending:
            self._ready.clear()
        if self._paused and len(self._pending) < self.high_water // 2:
            self._release()
        return batch

    async def take(self, max_n: int, linger_s: float) -> list[Message]:
        """Wait for a message, then ``linger_s`` more unless ``max_n`` are already here; take up to ``max_n``."""
        await self._ready.wait()
        if len(self._pending) < max_n and linger_s > 0:
            await asyncio.sleep(linger_s)
        return self.take_now(max_n)

    def clear(self) -> None:
        """Drop everything buffered (Faust's flow control calls this when a rebalance ends)."""
        self._pending.clear()
        self._ready.clear()
        self._release()

    def _release(self) -> None:
        for tp in self._paused:
            self._resume(tp)
        self._paused.clear()


def current(messages: Iterable[Message], generation_id: int) -> list[Message]:
    """The messages fetched in consumer generation ``generation_id`` (older ones belong to a past assignment)."""
    return [m for m in messages if m.generation_id == generation_id]


def buffer_for(app: faust.App, high_water: int) -> BatchBuffer:
    """A buffer pausing and resuming ``app``'s consumer fetches, cleared by its flow control."""
    buffer = BatchBuffer(
        high_water,
        pause=lambda tp: app.consumer.on_buffer_full(tp),  # noqa: PLW0108 - app.consumer is built lazily
        resume=lambda tp: app.consumer.on_buffer_drop(tp),  # noqa: PLW0108
    )
    app.flow_control.manage_queue(buffer)  # type: ignore[arg-type]  # duck-typed: only clear() is called
    return buffer


def ack_all(app: faust.App, messages: Iterable[Message]) -> None:
    """Mark ``messages`` processed: the consumer commits offsets up to the acked ones."""
    consumer = app.consumer
    for m in messages:
        m.ack(consumer)


class BatchConductor(Conductor):
    """Faust's conductor, delivering the messages of :class:`BatchTopic` channels to their buffers."""

    def _build_handler(self, tp: TP, channels: Any) -> Any:
        batch = [c for c in channels if isinstance(c, BatchTopic)]
        if not batch:
            return super()._build_handler(tp, channels)
        others = {c for c in channels if not isinstance(c, BatchTopic)}
        rest = super()._build_handler(tp, others) if others else None
        return _batch_handler(self.app, tp, [c.buffer for c in batch], rest)


def _batch_handler(app: Any, tp: TP, buffers: list[BatchBuffer], rest: Any) -> Callable[[Message], Any]:
    acquire_flow_control = app.flow_control.acquire
    track = app.consumer.track_message

    async def on_message(message: Message) -> None:
        await acquire_flow_control()  # suspended while partitions move and tables recover
        message.incref(len(buffers))
        message.tracked = True
        track(message)
        for buffer in buffers:
            buffer.put(message, tp)
        if rest is not None:
            await rest(message)

    return on_message
