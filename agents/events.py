"""Events agent: batches of user events -> user state table (changelogged) mirrored to the online store."""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import replace
from typing import Any, TypeVar

import faust
from faust.types import TP, Message
from mode import Service

from agents.changelog import ChangelogWriter
from agents.dead_letters import DeadLetterSink
from agents.ingest import Decoded, RawMessage, plan_batch, triage
from agents.runtime import Runtime
from state.errors import StoreUnavailable
from state.store import OnlineFeatureStore, WriteBatch
from streams.faust_batch import BatchBuffer, BatchTopic, ack_all, buffer_for, current
from streams.topics import USERS_TABLE

log = logging.getLogger(__name__)
T = TypeVar("T")


async def until_available(call: Callable[[], Awaitable[T]], what: str, max_delay_s: float = 2.0) -> T:
    """Retry a store call with backoff: losing a batch is never an option, stalling is (lag shows it)."""
    delay = 0.05
    while True:
        try:
            return await call()
        except StoreUnavailable as exc:
            log.warning("online store unavailable during %s, retrying in %.2f s: %s", what, delay, exc)
            await asyncio.sleep(delay)
            delay = min(delay * 2, max_delay_s)


async def write_until_stored(store: OnlineFeatureStore, batch: WriteBatch) -> None:
    await until_available(lambda: store.write_batch(batch), "a batch write")


async def load_missing_watermarks(rt: Runtime, source: str, partitions: set[int], applied: dict[int, int]) -> None:
    if partitions - applied.keys():
        stored = await until_available(lambda: rt.store.applied_offsets(source), "reading watermarks")
        for p in partitions - applied.keys():
            applied[p] = stored.get(p, -1)


async def load_missing_items(rt: Runtime, item_ids: set[str]) -> None:
    """Fill the category cache for items this batch mentions (one round trip for the unknown ones)."""
    wanted = {i for i in item_ids if i not in rt.catalog}
    if wanted:
        ids = sorted(wanted)
        records = await until_available(lambda: rt.store.read_items(ids), "reading the catalog")
        for item_id, rec in zip(ids, records, strict=True):
            if rec is not None:
                rt.catalog[item_id] = rec


def _record(rt: Runtime, decoded: list[Decoded], started: float) -> None:
    """Batch metrics: events by type, batch size and latency, and how stale the oldest event was when stored."""
    if not decoded:
        return
    rt.metrics.events(Counter(d.event.type for d in decoded))
    rt.metrics.ingest_batch(len(decoded), time.perf_counter() - started)
    rt.metrics.freshness([rt.clock.now() - min(d.event.ts.timestamp() for d in decoded)])


class EventsIngest(Service):
    """The events consumer: batches taken whole from the events topic's buffer, processed, then acked.

    The events topic is a :class:`~streams.faust_batch.BatchTopic` (no Faust stream: see that module).
    A batch is whatever arrived while the previous one was processed, plus up to ``batch_within_s`` of
    lingering when fewer than ``batch_size`` wait, so batches grow with load and stay small when idle.
    An exception crashes the worker (mode's rule for a service task): the batch is not acked, its
    offsets are not committed, and the restarted worker replays it idempotently.
    """

    def __init__(self, app: faust.App, rt: Runtime, table: Any, buffer: BatchBuffer) -> None:
        super().__init__()
        self.app, self.rt, self.table, self.buffer = app, rt, table, buffer
        self.dead = DeadLetterSink(app, rt)
        self.changelog = ChangelogWriter(app, table)
        self.applied: dict[int, int] = {}

    @Service.task
    async def _consume(self) -> None:
        w = self.rt.settings.worker
        while not self.should_stop:
            await self.handle(await self.buffer.take(w.batch_size, w.batch_within_s))

    async def handle(self, batch: list[Message]) -> None:
        """Process the current generation's messages of ``batch`` and ack them."""
        self.rt.local_users = self.table.data
        messages = current(batch, self.app.consumer_generation_id)
        if messages:
            msgs = [RawMessage(m.topic, m.partition, m.offset, m.key, m.value) for m in messages]
            await process_batch(self.rt, msgs, self.applied, self.table, self.dead, changelog=self.changelog)
            ack_all(self.app, messages)

    async def drain(self) -> None:
        """Process everything buffered now (tests drive the agent this way, without a running app)."""
        while len(self.buffer):
            await self.handle(self.buffer.take_now(self.rt.settings.worker.batch_size))


INGEST_ATTR = "streamrec_events_ingest"


def ingest_of(app: faust.App) -> EventsIngest:
    """The events consumer registered on ``app``."""
    ingest = getattr(app, INGEST_ATTR, None)
    if not isinstance(ingest, EventsIngest):
        raise LookupError("no events consumer is registered on this app")
    return ingest


async def feed(app: faust.App, values: list[bytes], key: bytes | None = None, partition: int = 0) -> None:
    """Deliver ``values`` as the fetch loop would (offsets after the stored watermark), then drain them.

    For functional tests: the same buffer, batching, processing and acks as a running worker.
    """
    ingest = ingest_of(app)
    topic = ingest.rt.topics.events
    start = (await ingest.rt.store.applied_offsets(topic)).get(partition, -1) + 1
    now = ingest.rt.clock.now()
    tp, gen = TP(topic, partition), app.consumer_generation_id
    for i, value in enumerate(values):
        message = Message(topic, partition, start + i, now, 0, [], key, value, None, tp=tp, generation_id=gen)
        ingest.buffer.put(message, tp)
    await ingest.drain()


def register(app: faust.App, rt: Runtime) -> EventsIngest:
    """Register the events consumer, its batch topic and the user-state table on ``app``."""
    table: Any = app.Table(
        USERS_TABLE, default=None, partitions=rt.settings.kafka.partitions, key_type=bytes, value_type=bytes
    )  # bytes -> the "raw" codec: values are encode_state()
    buffer = buffer_for(app, high_water=4 * rt.settings.worker.batch_size)
    app.topics.add(BatchTopic(app, rt.topics.events, buffer))
    ingest = EventsIngest(app, rt, table, buffer)
    app.add_dependency(ingest)
    setattr(app, INGEST_ATTR, ingest)  # faust.App declares no such attribute

    @app.on_partitions_revoked.connect  # type: ignore[arg-type]  # mode types sync receivers only
    async def forget_watermarks(sender: Any, *args: Any, signal: Any = None, **kwargs: Any) -> None:
        ingest.applied.clear()  # another worker may advance them now; reload on next sight

    return ingest


async def process_batch(
    rt: Runtime,
    msgs: list[RawMessage],
    applied: dict[int, int],
    table: Any,
    dead: DeadLetterSink,
    *,
    changelog: ChangelogWriter | None = None,
) -> None:
    """Decode, apply, store (one atomic write), mirror to the changelogged table, dead-letter the rest.

    The caller acknowledges the batch only after this returns, so a crash replays it (idempotently).
    """
    started = time.perf_counter()
    await load_missing_watermarks(rt, rt.topics.events, {m.partition for m in msgs}, applied)
    decoded, dead_letters = triage(msgs, rt.clock.now(), rt.settings.validation)
    await load_missing_items(rt, {d.event.item_id for d in decoded})
    plan = plan_batch(
        msgs,
        decoded,
        dead_letters,
        cfg=rt.features,
        pools=rt.pools,
        states=rt.user_state,
        catalog=rt.catalog,
        applied_offsets=applied,
        source=rt.topics.events,
    )
    assert plan.write is not None
    write = plan.write
    if rt.tower is not None and plan.users:
        vectors = rt.tower.embed(list(plan.users.values()))
        rt.session_vectors.put_many(rt.tower.version, plan.users, vectors)  # the serving funnel reuses them
        write = replace(write, user_vectors=vectors)
    await write_until_stored(rt.store, write)
    _record(rt, decoded, started)
    for d in decoded:  # clicks on this worker's lists update Thompson sampling's posteriors
        if d.event.type == "click" and d.event.request_id is not None:
            rt.posteriors.clicked(d.event.request_id, d.event.item_id)
    applied.update(write.offsets)
    records: list[tuple[int, bytes, bytes]] = []
    for user_id, state in plan.users.items():
        key = user_id.encode()
        table.data[key] = state
        records.append((plan.user_partition[user_id], key, plan.encoded[user_id]))
    await (changelog or ChangelogWriter(None, table)).write(records)
    for exc, m in plan.dead:
        await dead.send(exc, m)
