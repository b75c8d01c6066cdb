"""Send undecodable messages to the dead-letter topic with their reason and origin."""

from __future__ import annotations

import logging
from typing import Any

import faust

from agents.runtime import Runtime
from streams.codec import dead_letter, encode
from streams.errors import DecodeError

log = logging.getLogger(__name__)


class DeadLetterSink:
    """Writes :class:`streams.records.DeadLetter` records; never raises for a bad input message."""

    def __init__(self, app: faust.App, rt: Runtime) -> None:
        self._topic = app.topic(rt.topics.dead_letters)
        self._metrics = rt.metrics
        self.count = 0

    async def send(self, exc: DecodeError, msg: Any) -> None:
        record = dead_letter(
            exc, topic=msg.topic, partition=msg.partition, offset=msg.offset, key=msg.key, value=msg.value
        )
        log.warning("dead letter from %s[%d]@%d: %s", msg.topic, msg.partition, msg.offset, exc)
        self.count += 1
        self._metrics.dead_letter(exc.reason)
        await self._topic.send(key=msg.key, value=encode(record))
