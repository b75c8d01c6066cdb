"""Requests consumed on the worker's event loop by a plain aiokafka consumer, not through Faust's streams.

Faust fetches in a consumer thread of its own and hands each message to the loop: a wake-up across
threads, a queue, an event object and the acknowledgement bookkeeping per request, and the consumer
thread's Python work holds the GIL the loop needs. A request is a small, self-contained message that
needs none of a stream's machinery, so :class:`RequestConsumer` fetches ``rec-requests`` on the loop
itself and calls the handler directly.

It follows Faust's assignment: a worker answers the request partitions whose numbers match the events
partitions Faust gave it, since the user's table state lives with them (requests are keyed by user, like
events). It is not a group member (no second rebalance protocol); it commits under a group of its own,
``<app id>-requests``, with at-least-once semantics: an offset is committed only once its request has
been answered (the reply handed to the producer), so a crash re-answers rather than drops.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Iterable
from typing import Any, Protocol

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.errors import ConsumerStoppedError, KafkaError
from aiokafka.structs import OffsetAndMetadata
from mode import Service

from streams.settings import Settings
from streams.topics import topic_names

log = logging.getLogger(__name__)

Handler = Callable[[Any], Awaitable[None]]  # called with each consumer record (topic, partition, offset, key, value)


class RecordConsumer(Protocol):
    """What :class:`RequestConsumer` needs of ``AIOKafkaConsumer`` (a fake stands in for it in tests)."""

    async def start(self) -> None: ...
    async def stop(self) -> None: ...
    def assign(self, partitions: list[TopicPartition]) -> None: ...
    async def getone(self) -> Any: ...
    async def commit(self, offsets: dict[TopicPartition, OffsetAndMetadata]) -> None: ...


def request_partitions(assigned: Iterable[Any], events_topic: str, requests_topic: str) -> set[TopicPartition]:
    """The request partitions matching the events partitions in ``assigned`` (Faust's ``TP`` tuples).

    >>> from faust.types import TP
    >>> sorted(request_partitions([TP("ev", 2), TP("items", 0), TP("ev", 0)], "ev", "req"))
    [TopicPartition(topic='req', partition=0), TopicPartition(topic='req', partition=2)]
    """
    return {TopicPartition(requests_topic, tp.partition) for tp in assigned if tp.topic == events_topic}


class RequestConsumer(Service):
    """Fetches requests on the loop, answers each with ``handler`` in offset order, commits what was answered.

    :meth:`follow` (connected to the app's ``on_partitions_assigned`` signal) sets the partitions and
    :meth:`give_up` (``on_partitions_revoked``) drops them; until the first assignment nothing is fetched.
    Answered offsets are committed every ``commit_interval_s``, before every reassignment, and on stop.
    """

    def __init__(
        self,
        settings: Settings,
        handler: Handler,
        *,
        consumer: RecordConsumer | None = None,
        clock: Callable[[], float] = time.monotonic,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.settings, self.handler, self.clock = settings, handler, clock
        self._consumer = consumer
        self._assigned: set[TopicPartition] = set()
        self._has_partitions = asyncio.Event()
        self._answered: dict[TopicPartition, int] = {}  # next offset to commit, per partition
        self._committed: dict[TopicPartition, int] = {}
        self._last_commit = clock()
        self.answered = 0

    @property
    def group_id(self) -> str:
        return f"{self.settings.worker.app_id}-requests"

    def _build_consumer(self) -> RecordConsumer:
        s = self.settings
        consumer: RecordConsumer = AIOKafkaConsumer(
            bootstrap_servers=s.kafka.bootstrap_servers,
            client_id=f"{s.worker.app_id}-requests",
            group_id=self.group_id,
            enable_auto_commit=False,
            auto_offset_reset="earliest",  # as the app's streams: a first start answers what is already waiting
            fetch_max_wait_ms=s.worker.fetch_max_wait_ms,
        )
        return consumer

    async def on_start(self) -> None:
        consumer = self._consumer = self._consumer or self._build_consumer()
        await consumer.start()
        if self._assigned:  # Faust assigned partitions before this service started
            self._reassign(consumer, self._assigned)

    async def on_stop(self) -> None:
        consumer, self._consumer = self._consumer, None
        if consumer is None:
            return
        try:
            await self._commit(consumer, self._assigned)
        finally:
            await consumer.stop()

    async def follow(self, assigned: Iterable[Any]) -> None:
        """Answer the request partitions matching Faust's new events assignment (committing what was answered)."""
        await self._move_to(self._matching(assigned))

    async def give_up(self, revoked: Iterable[Any]) -> None:
        """Stop answering the request partitions matching revoked events partitions, their answers committed.

        Faust revokes before it assigns: the new owner then starts where this worker stopped, and no request
        is answered (nor its impression logged) twice for a rebalance.
        """
        await self._move_to(self._assigned - self._matching(revoked))

    def _matching(self, events_partitions: Iterable[Any]) -> set[TopicPartition]:
        names = topic_names(self.settings.kafka)
        return request_partitions(events_partitions, names.events, names.rec_requests)

    async def _move_to(self, wanted: set[TopicPartition]) -> None:
        consumer = self._consumer
        if consumer is None or wanted == self._assigned:
            self._assigned = wanted
            return
        # every answered offset, not only those given up: assign() resets the positions of all partitions,
        # kept ones included, to their commits
        await self._commit(consumer, self._assigned)
        self._reassign(consumer, wanted)

    def _reassign(self, consumer: RecordConsumer, wanted: set[TopicPartition]) -> None:
        consumer.assign(sorted(wanted))
        self._assigned = wanted
        for tp in set(self._answered) - wanted:
            self._answered.pop(tp, None)
            self._committed.pop(tp, None)
        if wanted:
            self._has_partitions.set()
        else:
            self._has_partitions.clear()
        log.info("answering requests of partitions %s", sorted(tp.partition for tp in wanted))

    @Service.task
    async def _consume(self) -> None:
        while not self.should_stop:
            await self._has_partitions.wait()
            consumer = self._consumer
            if consumer is None:
                return
            try:
                record = await consumer.getone()
            except ConsumerStoppedError:  # stopping: on_stop has committed what was answered
                return
            await self._answer(record)
            if self.clock() - self._last_commit >= self.settings.worker.commit_interval_s:
                await self._commit(consumer, self._assigned)

    async def _answer(self, record: Any) -> None:
        tp = TopicPartition(record.topic, record.partition)
        try:
            await self.handler(record)  # the handler turns a request's own failures into replies
        except Exception:  # the edge: a producer failure costs this reply (logged), never the serving loop
            log.exception("request at %s[%d]@%d not answered", record.topic, record.partition, record.offset)
        self.answered += 1
        if tp in self._assigned:  # not given up while it was answered
            self._answered[tp] = record.offset + 1

    async def _commit(self, consumer: RecordConsumer, partitions: Iterable[TopicPartition]) -> None:
        """Commit the answered offsets of ``partitions`` that moved since the last commit."""
        self._last_commit = self.clock()
        due = {
            tp: OffsetAndMetadata(off, "")
            for tp in partitions
            if (off := self._answered.get(tp)) is not None and self._committed.get(tp) != off
        }
        if not due:
            return
        try:
            await consumer.commit(due)
        except KafkaError as exc:  # a failed commit is retried at the next interval; nothing is lost
            log.warning("committing answered requests failed: %r", exc)
            return
        self._committed.update({tp: om.offset for tp, om in due.items()})
