"""Seeded, deterministic simulator of a shop: catalog updates and user events in time order, fast.

Sessions are drawn in vectorised chunks (lists shown with positions and a request id, clicks,
product views, carts, purchases, and organic views) and released in time order.  The same click
and purchase model answers :meth:`Simulator.respond`, so simulated users can react to any list.
Ids are stable for a seed: users ``u{n}``, items ``i{n}``, events ``e{seed}-{n}`` in emission order,
sessions ``s{seed}-{n}``, requests ``r{seed}-{n}``.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import replace
from datetime import UTC, datetime

import numpy as np

from streams.records import EVENT_TYPES, Event, ItemUpdate
from streams.sim_sessions import EventBatch, concat, draw_sessions, shown_lists
from streams.sim_world import SimConfig, World, build_world

__all__ = ["EventBatch", "SimConfig", "Simulator"]
_CHUNK_SESSIONS = 2048


class Simulator:
    """The event source: :meth:`batches` (columnar, fastest), :meth:`events`, :meth:`records`, :meth:`respond`."""

    def __init__(self, cfg: SimConfig | None = None) -> None:
        self.cfg = cfg or SimConfig()
        self.world: World = build_world(self.cfg)
        self._respond_rng = np.random.default_rng([self.cfg.seed, 2])
        self._respond_seq = 0

    def _index(self, prefix: str, ident: str, n: int) -> int | None:
        body = ident[1:]
        ok = ident.startswith(prefix) and body.isdigit() and int(body) < n
        return int(body) if ok else None

    # -- catalog ---------------------------------------------------------------------------------
    def item_update(self, i: int, at: float) -> ItemUpdate:
        """The catalog record of item ``i`` as published at time ``at``."""
        c = self.world.catalog
        available = bool(c.valid(np.array([i]), np.array([at]))[0])
        return ItemUpdate.model_construct(
            item_id=f"i{i}",
            category=f"cat{c.category[i]}",
            brand=f"brand{c.brand[i]}",
            price=float(c.price[i]),
            available=available,
            created_at=_dt(float(c.created_at[i])),
            title=f"item {i}",
        )

    def catalog_updates(self) -> list[tuple[float, ItemUpdate]]:
        """Every catalog record with its publication time: the start catalog, new items, stock changes."""
        c, start = self.world.catalog, self.cfg.start
        times = [(start, int(i)) for i in np.flatnonzero(c.created_at <= start)]
        times += [(float(c.created_at[i]), int(i)) for i in np.flatnonzero(c.created_at > start)]
        for i in np.flatnonzero(np.isfinite(c.off_at)):
            times += [(float(t), int(i)) for t in (c.off_at[i], c.on_at[i]) if t > max(c.created_at[i], start)]
        times.sort()
        return [(t, self.item_update(i, t)) for t, i in times]

    # -- events ----------------------------------------------------------------------------------
    def batches(self, *, max_events: int | None = None, until: float | None = None) -> Iterator[EventBatch]:
        """Time-ordered chunks of events from ``cfg.start`` until ``max_events`` events or time ``until``."""
        if max_events is None and until is None:
            raise ValueError("give max_events or until: the stream is otherwise endless")
        rng = np.random.default_rng([self.cfg.seed, 1])
        pending: EventBatch | None = None
        t, sessions, emitted = self.cfg.start, 0, 0
        while True:
            chunk, t = draw_sessions(self.world, rng, t, sessions, _CHUNK_SESSIONS)
            sessions += _CHUNK_SESSIONS
            merged = chunk if pending is None else concat([pending, chunk])
            cut = t if until is None else min(t, until)
            ready, pending = merged.take(merged.ts < cut), merged.take(merged.ts >= cut)
            if max_events is not None:
                ready = _first(ready, max_events - emitted)
            ready = _numbered(ready, emitted)
            emitted += len(ready)
            if len(ready):
                yield ready
            if (max_events is not None and emitted >= max_events) or (until is not None and t >= until):
                return

    def events(self, *, max_events: int | None = None, until: float | None = None) -> Iterator[Event]:
        """The events of :meth:`batches` as records."""
        for batch in self.batches(max_events=max_events, until=until):
            yield from self.to_events(batch)

    def records(self, *, max_events: int | None = None, until: float | None = None) -> Iterator[Event | ItemUpdate]:
        """Catalog updates and events merged in time order (an update first when times tie)."""
        updates = self.catalog_updates()
        k = 0
        last = self.cfg.start
        for ev in self.events(max_events=max_events, until=until):
            last = ev.ts.timestamp()
            while k < len(updates) and updates[k][0] <= last:
                yield updates[k][1]
                k += 1
            yield ev
        end = until if until is not None else last
        yield from (u for t, u in updates[k:] if t <= end)

    def to_events(self, b: EventBatch) -> list[Event]:
        """Records of a batch (``model_construct``: the simulator's values are valid by construction)."""
        seed = self.cfg.seed
        cols = (b.ts, b.type, b.user, b.item, b.session, b.request, b.position, b.price, b.seq)
        return [
            Event.model_construct(
                event_id=f"e{seed}-{q}",
                type=EVENT_TYPES[t],
                user_id=f"u{u}",
                item_id=f"i{i}",
                ts=_dt(ts),
                session_id=f"s{seed}-{s}",
                price=price,
                position=None if p < 0 else p,
                request_id=None if r < 0 else f"r{seed}-{r}",
                context={},
            )
            for ts, t, u, i, s, r, p, price, q in zip(*(c.tolist() for c in cols), strict=True)
        ]

    # -- closed loop -----------------------------------------------------------------------------
    def respond(
        self,
        user_id: str,
        items: Sequence[str],
        now: float,
        *,
        request_id: str,
        session_id: str | None = None,
        impressions: bool = True,
    ) -> list[Event]:
        """How ``user_id`` reacts to ``items`` shown in this order at ``now``, as time-ordered events.

        The generator's own click and purchase model, on a separate random stream (calling this never
        changes what :meth:`batches` yields).  Unknown or unavailable items are shown, never clicked.
        Raises ``KeyError`` for a user the simulator does not know.
        """
        u = self._index("u", user_id, self.cfg.n_users)
        if u is None:
            raise KeyError(f"not a simulated user: {user_id!r}")
        idx = [self._index("i", i, self.cfg.n_items) for i in items]
        n = len(items)
        known = np.array([i is not None for i in idx], dtype=bool)
        item = np.array([i or 0 for i in idx], dtype=np.int64)
        pos = np.arange(n, dtype=np.int64)
        ts = (now + 0.001 * pos).astype(np.float64)
        users = np.full(n, u, dtype=np.int64)
        # The request column carries the list position here, to map rows back to ``items``.
        b = shown_lists(
            self.world,
            self._respond_rng,
            user=users,
            item=item,
            position=pos,
            ts=ts,
            session=np.zeros(n, np.int64),
            request=pos,
        )
        b = b.take(known[b.request] | (b.type == EVENT_TYPES.index("impression")))
        if not impressions:
            b = b.take(b.type != EVENT_TYPES.index("impression"))
        b = b.take(np.argsort(b.ts, kind="stable"))
        out: list[Event] = []
        for ts_, t, p, r in zip(b.ts.tolist(), b.type.tolist(), b.position.tolist(), b.request.tolist(), strict=True):
            self._respond_seq += 1
            out.append(
                Event.model_construct(
                    event_id=f"x{self.cfg.seed}-{self._respond_seq}",
                    type=EVENT_TYPES[t],
                    user_id=user_id,
                    item_id=items[r],
                    ts=_dt(ts_),
                    session_id=session_id,
                    price=None if idx[r] is None else float(self.world.catalog.price[idx[r]]),
                    position=None if p < 0 else p,
                    request_id=request_id,
                    context={},
                )
            )
        return out


def _dt(ts: float) -> datetime:
    return datetime.fromtimestamp(ts, UTC)


def _first(b: EventBatch, n: int) -> EventBatch:
    order = np.argsort(b.ts, kind="stable")[: max(n, 0)]
    return b.take(np.sort(order))


def _numbered(b: EventBatch, first: int) -> EventBatch:
    """Sort by time, quantise times to whole microseconds (what the wire format carries) and number."""
    out = b.take(np.argsort(b.ts, kind="stable"))
    seq = np.arange(first, first + len(out), dtype=np.int64)
    return replace(out, ts=np.round(out.ts * 1e6) / 1e6, seq=seq)
