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

from agents.changelog import ChangelogWriter
from agents.dead_letters import DeadLetterSink
from agents.ingest import Decoded, RawMessage, plan_batch, triage
from agents.runtime import Runtime
from state.errors import StoreUnavailable
from state.store import OnlineFeatureStore, WriteBatch

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


def register(app: faust.App, rt: Runtime) -> None:
    """Register the events agent and the user-state table on ``app``."""
    topic = app.topic(rt.topics.events)
    table: Any = app.Table(
        "users", default=None, partitions=rt.settings.kafka.partitions, key_type=bytes, value_type=bytes
    )  # bytes -> the "raw" codec: values are encode_state()
    dead = DeadLetterSink(app, rt)
    changelog = ChangelogWriter(app, table)
    applied: dict[int, int] = {}
    w = rt.settings.worker

    @app.on_partitions_revoked.connect  # type: ignore[arg-type]  # mode types sync receivers only
    async def forget_watermarks(sender: Any, *args: Any, signal: Any = None, **kwargs: Any) -> None:
        applied.clear()  # another worker may advance them now; reload on next sight

    @app.agent(topic, name="events")
    async def ingest(stream: faust.StreamT[bytes]) -> None:
        rt.local_users = table.data
        async for events in stream.take_events(w.batch_size, within=w.batch_within_s):  # type: ignore[attr-defined]
            msgs = [
                RawMessage(e.message.topic, e.message.partition, e.message.offset, e.message.key, e.message.value)
                for e in events
            ]
            await process_batch(rt, msgs, applied, table, dead, changelog=changelog)


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
        write = replace(write, user_vectors=rt.tower.embed(list(plan.users.values())))
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
