"""Items agent: catalog upserts -> item records in the online store (and this worker's catalog cache)."""

from __future__ import annotations

import faust

from agents.dead_letters import DeadLetterSink
from agents.events import write_until_stored
from agents.runtime import Runtime
from state.items import ItemRecord
from state.pools import catalog_log_update, fresh_updates
from state.store import WriteBatch
from streams.codec import decode_item
from streams.errors import DecodeError


def register(app: faust.App, rt: Runtime) -> None:
    """Register the catalog agent on ``app``."""
    topic = app.topic(rt.topics.items)
    dead = DeadLetterSink(app, rt)
    w = rt.settings.worker

    @app.agent(topic, name="items")
    async def catalog(stream: faust.StreamT[bytes]) -> None:
        async for events in stream.take_events(w.batch_size, within=w.batch_within_s):  # type: ignore[attr-defined]
            items: dict[str, ItemRecord] = {}
            offsets: dict[int, int] = {}
            now = rt.clock.now()
            for e in events:
                msg = e.message
                offsets[msg.partition] = max(offsets.get(msg.partition, -1), msg.offset)
                try:
                    update = decode_item(msg.value, now=now, limits=rt.settings.validation)
                except DecodeError as exc:
                    await dead.send(exc, msg)
                    continue
                items[update.item_id] = ItemRecord.from_update(update)
            pools = fresh_updates(items.values(), rt.catalog, rt.pools)
            if items:
                pools.append(catalog_log_update(items, now, rt.pools))
            await write_until_stored(
                rt.store, WriteBatch(source=rt.topics.items, offsets=offsets, items=items, pools=pools)
            )
            rt.catalog.update(items)
            rt.catalog_changed(list(items))
