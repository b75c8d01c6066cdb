"""Request/reply over Kafka: produce a RecommendRequest, await the response with the same correlation id."""

from __future__ import annotations

import asyncio
import threading
import uuid
from collections.abc import Coroutine, Sequence
from datetime import UTC, datetime
from types import TracebackType
from typing import Any, Self, TypeVar

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.errors import KafkaError
from pydantic import ValidationError

from streams.codec import encode
from streams.errors import InfraError, RequestTimeoutError
from streams.records import ContextValue, RecommendRequest, RecommendResponse
from streams.settings import Settings
from streams.topics import topic_names

T = TypeVar("T")


class RecClient:
    """Async client: ``await client.recommend("u1", k=10)`` returns a typed response or raises.

    One consumer reads every partition of the response topic from its end (no consumer group), so
    any number of clients can share the topic; each keeps only the replies it is waiting for.
    """

    def __init__(self, settings: Settings, *, response_topic: str | None = None) -> None:
        self._settings = settings
        names = topic_names(settings.kafka)
        self._request_topic = names.rec_requests
        self._response_topic = response_topic or names.rec_responses
        self._pending: dict[str, asyncio.Future[RecommendResponse]] = {}
        self._producer: AIOKafkaProducer | None = None
        self._consumer: AIOKafkaConsumer | None = None
        self._reader: asyncio.Task[None] | None = None

    async def start(self) -> None:
        servers = self._settings.kafka.bootstrap_servers
        self._producer = AIOKafkaProducer(bootstrap_servers=servers, linger_ms=0, acks=1)
        self._consumer = AIOKafkaConsumer(bootstrap_servers=servers, enable_auto_commit=False)
        try:
            await self._producer.start()
            await self._consumer.start()
            parts = await self._producer.partitions_for(self._response_topic)
            tps = [TopicPartition(self._response_topic, p) for p in sorted(parts)]
            self._consumer.assign(tps)
            await self._consumer.seek_to_end(*tps)
            for tp in tps:  # pin the positions now, so no reply produced after this point is missed
                await self._consumer.position(tp)
        except KafkaError as exc:
            await self.close()
            raise InfraError(f"cannot reach Kafka at {servers}: {exc}") from exc
        self._reader = asyncio.create_task(self._read_replies(), name="recclient-reader")

    async def close(self) -> None:
        if self._reader is not None:
            self._reader.cancel()
            await asyncio.gather(self._reader, return_exceptions=True)
        for part in (self._consumer, self._producer):
            if part is not None:
                await part.stop()
        for fut in self._pending.values():
            fut.cancel()
        self._pending.clear()

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def _read_replies(self) -> None:
        assert self._consumer is not None
        while True:
            batches = await self._consumer.getmany(timeout_ms=100)
            for records in batches.values():
                for rec in records:
                    self._deliver(rec.key, rec.value)

    def _deliver(self, key: bytes | None, value: bytes | None) -> None:
        fut = self._pending.get(key.decode() if key else "")
        if fut is None or fut.done() or value is None:
            return
        try:
            fut.set_result(RecommendResponse.model_validate_json(value))
        except ValidationError as exc:
            fut.set_exception(InfraError(f"malformed response for {key!r}: {exc}"))

    async def send(self, request: RecommendRequest) -> RecommendResponse:
        """Send a prepared request and wait for its reply until its deadline (plus transport slack)."""
        assert self._producer is not None, "call start() first"
        cid = request.correlation_id
        fut: asyncio.Future[RecommendResponse] = asyncio.get_running_loop().create_future()
        self._pending[cid] = fut
        deadline_ms = request.deadline_ms or self._settings.serving.default_deadline_ms
        try:
            await self._producer.send(self._request_topic, encode(request), key=request.user_id.encode())
            return await asyncio.wait_for(fut, timeout=deadline_ms / 1000.0 + 1.0)
        except TimeoutError as exc:
            raise RequestTimeoutError(cid, deadline_ms) from exc
        finally:
            self._pending.pop(cid, None)

    async def recommend(
        self,
        user_id: str,
        k: int = 10,
        *,
        surface: str = "home",
        context: dict[str, ContextValue] | None = None,
        exclude: Sequence[str] = (),
        deadline_ms: float | None = None,
    ) -> RecommendResponse:
        request = RecommendRequest(
            correlation_id=uuid.uuid4().hex,
            user_id=user_id,
            k=k,
            surface=surface,
            context=context or {},
            exclude=list(exclude),
            deadline_ms=deadline_ms or self._settings.serving.default_deadline_ms,
            sent_at=datetime.now(UTC),
            reply_to=self._response_topic,
        )
        return await self.send(request)


class SyncRecClient:
    """Blocking wrapper over :class:`RecClient` running its own event loop in a daemon thread."""

    def __init__(self, settings: Settings, *, response_topic: str | None = None) -> None:
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="recclient-loop", daemon=True)
        self._thread.start()
        self._client = RecClient(settings, response_topic=response_topic)
        self._run(self._client.start())

    def _run(self, coro: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result()

    def recommend(self, user_id: str, k: int = 10, **kwargs: Any) -> RecommendResponse:
        return self._run(self._client.recommend(user_id, k, **kwargs))

    def close(self) -> None:
        self._run(self._client.close())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=5)

    def __enter__(self) -> Self:
        return self

    def __exit__(self, t: type[BaseException] | None, v: BaseException | None, tb: TracebackType | None) -> None:
        self.close()
