"""Replies on a producer of their own, so an answer never waits behind the worker's bulk writes.

aiokafka's sender keeps one produce request in flight per broker. On the app's producer, a reply waits
for the impression of the request before it, the table's changelog and any dead letters to be acknowledged
first. The reply producer sends replies only: each goes out as soon as it is built. Impressions have a
producer of their own too, which lingers so that several share a produce request.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import faust
from aiokafka import AIOKafkaProducer
from mode import Service

from streams.settings import Settings

log = logging.getLogger(__name__)

#: Loop turns from ``AIOKafkaProducer.send`` to the request on the socket: the accumulator's waiter wakes the
#: sender's ``asyncio.wait``, which wakes the sender task, which starts the produce task that writes.
SENDER_HOPS = 3


class ReplyProducer(Service):
    """Sends replies with ``linger_ms=0`` and ``acks=1``: a reply is ephemeral, so it waits for no follower.

    Until the service has started (Faust's test context starts none), replies go through the app's topics:
    the same bytes, keys and topics, on the shared producer.
    """

    client_suffix = "replies"
    hops = SENDER_HOPS  # loop turns given to the sender after each send

    def __init__(
        self, app: faust.App, settings: Settings, *, linger_ms: int = 0, acks: int | str = 1, **kwargs: Any
    ) -> None:
        super().__init__(**kwargs)
        self.app, self.settings = app, settings
        self.linger_ms, self.acks = linger_ms, acks
        self._producer: AIOKafkaProducer | None = None
        self._topics: dict[str, Any] = {}
        self.failed = 0  # messages the broker did not take (logged; for a reply, the client's deadline answers)

    async def on_start(self) -> None:
        producer = AIOKafkaProducer(
            bootstrap_servers=self.settings.kafka.bootstrap_servers,
            client_id=f"{self.settings.worker.app_id}-{self.client_suffix}",
            linger_ms=self.linger_ms,
            acks=self.acks,
        )
        await producer.start()
        self._producer = producer

    async def on_stop(self) -> None:
        producer, self._producer = self._producer, None
        if producer is not None:
            await producer.stop()  # flushes what is still buffered

    async def send(self, topic: str, key: bytes | None, value: bytes) -> None:
        """Hand one message to the producer (returns once it is buffered, not when the broker acknowledges)."""
        producer = self._producer
        if producer is None:
            await self._topic(topic).send(key=key, value=value)
            return
        delivery = await producer.send(topic, value, key=key)
        delivery.add_done_callback(self._delivered)
        for _ in range(self.hops):  # let the sender write it before the caller's bookkeeping takes the loop
            await asyncio.sleep(0)

    def _topic(self, name: str) -> Any:
        if name not in self._topics:
            self._topics[name] = self.app.topic(name)
        return self._topics[name]

    def _delivered(self, delivery: asyncio.Future[Any]) -> None:
        if delivery.cancelled() or delivery.exception() is None:
            return
        self.failed += 1
        log.warning("a %s message was not delivered: %r", self.client_suffix, delivery.exception())


class ImpressionProducer(ReplyProducer):
    """Sends impressions on a producer of their own that lingers ``serving.impression_linger_ms``, so several
    share one produce request, with ``acks=all``: they are training data. Neither delays a reply: replies
    have their producer, and the app's carries the changelogs."""

    client_suffix = "impressions"
    hops = 0  # nothing waits on an impression: the sender takes it when the linger is up

    def __init__(self, app: faust.App, settings: Settings, **kwargs: Any) -> None:
        super().__init__(app, settings, linger_ms=settings.serving.impression_linger_ms, acks="all", **kwargs)
