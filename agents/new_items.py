"""New catalog items into every worker's ANN index, without a rebuild.

The items agent (on whichever worker consumes the item's partition) records each upsert in the
store's catalog log (``pool:catalog``, item -> write time). Every worker polls that log, embeds the
items its served version's index lacks with the version's item tower (content only) and adds them to
the index in place, so a new item is retrievable by ANN on every worker within about one poll interval
(an entry written with a time older than the last poll's start, by a skewed clock or a slow write, within
``CLOCK_MARGIN_S`` more).
"""

from __future__ import annotations

import logging

import faust

from agents.events import until_available
from agents.runtime import Runtime
from state.pools import CATALOG_LOG

log = logging.getLogger(__name__)
#: Workers' clocks may disagree slightly and a write lands a little after the time it records: once per
#: this many seconds a poll looks this far behind the cursor (this worker's clock when the last poll
#: started) again. The polls in between read only entries above the cursor: re-reading the margin every
#: poll re-read a whole bulk catalog load, and checked every id of it against the index, for five seconds.
CLOCK_MARGIN_S = 5.0


async def sync_new_items(rt: Runtime) -> int:
    """Embed and index the logged items this worker's index lacks; return how many were added."""
    live, tower = rt.live_index, rt.item_tower
    if live is None or tower is None:
        return 0
    started = rt.clock.now()
    look_back = started - live.looked_back >= CLOCK_MARGIN_S
    since = live.cursor - CLOCK_MARGIN_S if look_back else live.cursor
    # The ids only, without their times: parsing tens of thousands of scores blocked serving.
    logged = await until_available(
        lambda: rt.store.read_pool_since(CATALOG_LOG, since, rt.pools.catalog_log_keep), "the catalog log"
    )
    wanted = sorted(live.missing(logged))
    added = 0
    if wanted:
        records = await until_available(lambda: rt.store.read_items(wanted), "reading new items")
        found = [r for r in records if r is not None]
        if found:
            added = live.add([r.item_id for r in found], tower.embed(found, rt.clock.now()))
            log.info("indexed %d new items (model %s, %d in the index)", added, tower.version, len(live))
    if live is rt.live_index:  # a swapped-in version starts its own cursor
        # This poll saw every entry written before it started: the next reads from then (less the margin),
        # not from the newest entry's time, which after a bulk load would re-read the whole load each poll.
        live.cursor = max(live.cursor, started)
        if look_back:
            live.looked_back = started
    return added


def register(app: faust.App, rt: Runtime) -> None:
    """Every worker follows the catalog log (a timer, not a group-consumed topic: each index must grow)."""

    @app.timer(interval=rt.settings.models.catalog_poll_interval_s)  # type: ignore[untyped-decorator]
    async def index_new_items() -> None:
        await sync_new_items(rt)
