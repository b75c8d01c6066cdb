"""The simulator's vectorised session model: shown lists, the click-to-purchase funnel, organic views."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from streams.records import EVENT_TYPES
from streams.sim_world import F64, I64, B, World

VIEW, CLICK, CART, BUY, IMPRESSION = (
    EVENT_TYPES.index(t) for t in ("view", "click", "add_to_cart", "purchase", "impression")
)
MAX_REQUESTS = 16  # per session; request ids are ``session * MAX_REQUESTS + k``


@dataclass(frozen=True, slots=True)
class EventBatch:
    """Events as columns; ``request``/``position``/``session`` are -1 where absent; ``seq`` numbers events."""

    ts: F64
    type: I64
    user: I64
    item: I64
    session: I64
    request: I64
    position: I64
    price: F64
    seq: I64

    def __len__(self) -> int:
        return int(self.ts.shape[0])

    def take(self, index: B | I64) -> EventBatch:
        return EventBatch(*(getattr(self, f)[index] for f in FIELDS))


FIELDS: tuple[str, ...] = EventBatch.__slots__


def concat(parts: list[EventBatch]) -> EventBatch:
    return EventBatch(*(np.concatenate([getattr(p, f) for p in parts]) for f in FIELDS))


@dataclass(frozen=True, slots=True)
class _Rows:
    """Columns shared by the events derived from the same shown or sought-out items."""

    world: World
    user: I64
    item: I64
    session: I64
    request: I64

    def at(self, ts: F64, typ: int, position: I64) -> EventBatch:
        n = ts.shape[0]
        kind = np.full(n, typ, dtype=np.int64)
        price = self.world.catalog.price[self.item]
        seq = np.zeros(n, dtype=np.int64)
        return EventBatch(ts, kind, self.user, self.item, self.session, self.request, position, price, seq)


def shown_lists(
    world: World, rng: np.random.Generator, *, user: I64, item: I64, position: I64, ts: F64, session: I64, request: I64
) -> EventBatch:
    """Impressions of shown items and what the users did with them (clicks, views, carts, purchases)."""
    ok = world.catalog.valid(item, ts)
    clicked, carted, bought = world.outcomes(user, item, position, rng)
    clicked &= ok
    carted &= ok
    bought &= ok
    t_click = ts + 1.0 + rng.exponential(5.0, ts.shape[0])
    t_cart = t_click + 5.0 + rng.exponential(20.0, ts.shape[0])
    t_buy = t_cart + 5.0 + rng.exponential(60.0, ts.shape[0])
    # Nobody clicks, carts or buys an item once it is out of stock.
    clicked &= world.catalog.valid(item, t_click + 0.5)
    carted &= clicked & world.catalog.valid(item, t_cart)
    bought &= carted & world.catalog.valid(item, t_buy)
    none = np.full(ts.shape[0], -1, dtype=np.int64)
    rows = _Rows(world, user, item, session, request)
    return concat(
        [
            rows.at(ts, IMPRESSION, position),
            rows.at(t_click, CLICK, position).take(clicked),
            rows.at(t_click + 0.5, VIEW, none).take(clicked),
            rows.at(t_cart, CART, none).take(carted),
            rows.at(t_buy, BUY, none).take(bought),
        ]
    )


def _requests(world: World, rng: np.random.Generator, starts: F64, first_session: int) -> tuple[I64, F64, I64]:
    """Per request: its session row, its time, its id."""
    cfg = world.cfg
    n = starts.shape[0]
    nreq = np.minimum(1 + rng.poisson(max(cfg.requests_per_session - 1.0, 0.0), n), MAX_REQUESTS)
    sess = np.repeat(np.arange(n), nreq)
    first = np.cumsum(nreq) - nreq
    gaps = rng.exponential(30.0, sess.shape[0])
    gaps[first] = rng.exponential(2.0, n)
    cs = np.cumsum(gaps)
    offset = cs - np.repeat(cs[first] - gaps[first], nreq)
    k = np.arange(sess.shape[0]) - np.repeat(first, nreq)
    return sess, starts[sess] + offset, (first_session + sess) * MAX_REQUESTS + k


def _fill_lists(world: World, rng: np.random.Generator, user: I64, ts: F64, k: int) -> tuple[I64, B]:
    """Items for lists of ``k`` slots (rows of ``k``): valid at ``ts`` and distinct within a list where possible."""
    explore = world.cfg.explore_share
    item = world.sample_items(world.sample_categories(user, explore, rng), rng)
    bad = np.ones(item.shape[0], dtype=bool)
    for _ in range(4):
        bad = ~world.catalog.valid(item, ts) | _duplicates(item, k)
        if not bad.any():
            break
        idx = np.flatnonzero(bad)
        item[idx] = world.sample_items(world.sample_categories(user[idx], explore, rng), rng)
    bad = ~world.catalog.valid(item, ts) | _duplicates(item, k)
    return item, ~bad


def _duplicates(item: I64, k: int) -> B:
    rows = item.reshape(-1, k)
    order = np.argsort(rows, axis=1, kind="stable")
    srt = np.take_along_axis(rows, order, axis=1)
    dup = np.zeros_like(rows, dtype=bool)
    dup[:, 1:] = srt[:, 1:] == srt[:, :-1]
    out = np.zeros_like(dup)
    np.put_along_axis(out, order, dup, axis=1)
    return out.reshape(-1)


def _organic(world: World, rng: np.random.Generator, users: I64, starts: F64, sessions: I64) -> EventBatch:
    """Items users seek out themselves (search, browsing): views, sometimes carts and purchases."""
    n_org = rng.poisson(world.cfg.organic_views_per_session, users.shape[0])
    row = np.repeat(np.arange(users.shape[0]), n_org)
    user = users[row]
    ts = starts[row] + rng.uniform(0.0, 180.0, row.shape[0])
    item = world.sample_items(world.sample_categories(user, 0.1, rng), rng)
    keep = world.catalog.valid(item, ts)
    user, item, ts, sess = user[keep], item[keep], ts[keep], sessions[row][keep]
    _, carted, bought = world.outcomes(user, item, np.full(user.shape[0], -1, dtype=np.int64), rng)
    t_cart = ts + 5.0 + rng.exponential(20.0, ts.shape[0])
    t_buy = t_cart + 5.0 + rng.exponential(60.0, ts.shape[0])
    carted &= world.catalog.valid(item, t_cart)
    bought &= carted & world.catalog.valid(item, t_buy)
    none = np.full(ts.shape[0], -1, dtype=np.int64)
    rows = _Rows(world, user, item, sess, none)
    return concat(
        [
            rows.at(ts, VIEW, none),
            rows.at(t_cart, CART, none).take(carted),
            rows.at(t_buy, BUY, none).take(bought),
        ]
    )


def draw_sessions(
    world: World, rng: np.random.Generator, t: float, first_session: int, n: int
) -> tuple[EventBatch, float]:
    """``n`` sessions starting after ``t`` (unsorted events) and the start of the last one."""
    cfg = world.cfg
    starts = t + np.cumsum(rng.exponential(1.0 / cfg.sessions_per_s, n))
    users = rng.choice(cfg.n_users, n, p=world.users.activity)
    sessions = first_session + np.arange(n)
    req_sess, req_ts, req_id = _requests(world, rng, starts, first_session)
    k = cfg.list_size
    imp_req = np.repeat(np.arange(req_ts.shape[0]), k)
    pos = np.tile(np.arange(k, dtype=np.int64), req_ts.shape[0])
    user = users[req_sess][imp_req]
    ts = req_ts[imp_req] + 0.001 * pos
    item, ok = _fill_lists(world, rng, user, ts, k)
    shown = shown_lists(
        world,
        rng,
        user=user[ok],
        item=item[ok],
        position=pos[ok],
        ts=ts[ok],
        session=sessions[req_sess][imp_req][ok],
        request=req_id[imp_req][ok],
    )
    return concat([shown, _organic(world, rng, users, starts, sessions)]), float(starts[-1])
