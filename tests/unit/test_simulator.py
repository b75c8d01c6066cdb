"""The simulator: deterministic, time-ordered, realistic enough to learn from, and able to respond to lists."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from streams.records import Event, ItemUpdate
from streams.sim_output import event_json, paced, write_jsonl
from streams.simulator import SimConfig, Simulator

SMALL = SimConfig(seed=3, n_users=500, n_items=400, n_categories=6, sessions_per_s=5.0, horizon_s=3600.0)


@pytest.fixture(scope="module")
def events() -> list[Event]:
    return list(Simulator(SMALL).events(max_events=30_000))


def test_same_seed_same_events_and_prefix_stable(events: list[Event]) -> None:
    again = list(Simulator(SMALL).events(max_events=5_000))
    assert again == events[:5_000]
    other = list(Simulator(SimConfig(seed=4, n_users=500, n_items=400, n_categories=6)).events(max_events=100))
    assert [e.item_id for e in other] != [e.item_id for e in events[:100]]


def test_time_order_unique_ids_and_bounds(events: list[Event]) -> None:
    ts = [e.ts.timestamp() for e in events]
    assert ts == sorted(ts) and ts[0] >= SMALL.start
    assert len({e.event_id for e in events}) == len(events)
    assert [e.event_id for e in events[:3]] == ["e3-0", "e3-1", "e3-2"]
    until = SMALL.start + 120.0
    tail = list(Simulator(SMALL).events(until=until))
    assert tail and max(e.ts.timestamp() for e in tail) < until
    assert tail == events[: len(tail)]
    with pytest.raises(ValueError, match="endless"):
        next(Simulator(SMALL).batches())


def test_impressions_mostly_unclicked_with_position_bias(events: list[Event]) -> None:
    kinds = Counter(e.type for e in events)
    assert set(kinds) == {"impression", "view", "click", "add_to_cart", "purchase"}
    ctr = kinds["click"] / kinds["impression"]
    assert 0.02 < ctr < 0.15
    shown = Counter(e.position for e in events if e.type == "impression")
    clicked = Counter(e.position for e in events if e.type == "click")
    assert clicked[0] / shown[0] > 2 * clicked[9] / shown[9]
    assert kinds["purchase"] < kinds["add_to_cart"] < kinds["click"]


def test_clicks_and_purchases_follow_what_was_shown(events: list[Event]) -> None:
    shown: dict[tuple[str | None, str], Event] = {}
    carted: set[tuple[str, str]] = set()
    for e in events:
        if e.type == "impression":
            shown[(e.request_id, e.item_id)] = e
        elif e.type == "click":
            imp = shown[(e.request_id, e.item_id)]
            assert (imp.user_id, imp.position, imp.session_id) == (e.user_id, e.position, e.session_id)
            assert imp.ts < e.ts
        elif e.type == "add_to_cart":
            carted.add((e.user_id, e.item_id))
        elif e.type == "purchase":
            assert (e.user_id, e.item_id) in carted
    per_list = Counter(e.request_id for e in events if e.type == "impression")
    assert Counter(per_list.values()).most_common(1)[0][0] == SMALL.list_size


def test_popularity_is_skewed(events: list[Event]) -> None:
    counts = np.array(sorted(Counter(e.item_id for e in events if e.type == "view").values(), reverse=True))
    top = counts[: max(1, len(counts) // 10)].sum() / counts.sum()
    assert top > 0.3  # the top 10 % of items draw far more than 10 % of views


def test_catalog_changes_are_respected(events: list[Event]) -> None:
    sim = Simulator(SMALL)
    cat = sim.world.catalog
    assert np.all(cat.price > 0)
    items = np.array([int(e.item_id[1:]) for e in events])
    ts = np.array([e.ts.timestamp() for e in events])
    assert cat.valid(items, ts).all()  # nothing shown or bought before creation or while out of stock
    updates = sim.catalog_updates()
    created_during = [u for t, u in updates if t > SMALL.start and u.created_at.timestamp() == t]
    assert created_during and all(u.available for u in created_during)
    assert any(not u.available for _, u in updates)


def test_records_publish_items_before_their_events() -> None:
    sim = Simulator(SMALL)
    known: set[str] = set()
    last = 0.0
    for rec in sim.records(until=SMALL.start + 900):
        if isinstance(rec, ItemUpdate):
            known.add(rec.item_id)
        else:
            assert rec.item_id in known
            assert rec.ts.timestamp() >= last
            last = rec.ts.timestamp()
    assert len(known) >= SMALL.n_items * 0.85


def test_json_fast_path_is_the_wire_format() -> None:
    sim = Simulator(SMALL)
    batch = next(sim.batches(max_events=2_000))
    assert [Event.model_validate_json(j) for j in event_json(batch, SMALL.seed)] == sim.to_events(batch)


def test_respond_uses_the_same_model_and_its_own_randomness() -> None:
    sim = Simulator(SMALL)
    before = next(Simulator(SMALL).batches(max_events=500)).item.tolist()
    user = 0
    taste = sim.world.users.taste[user]
    fav, worst = int(np.argmax(taste)), int(np.argmin(taste))
    cat = sim.world.catalog
    now = SMALL.start + 2 * SMALL.horizon_s  # every item exists and is in stock again
    good = [f"i{i}" for i in np.flatnonzero(cat.category == fav)[:10]]
    bad = [f"i{i}" for i in np.flatnonzero(cat.category == worst)[:10]]
    clicks = {"good": 0, "bad": 0}
    for k in range(300):
        for name, items in (("good", good), ("bad", bad)):
            evs = sim.respond("u0", items, now, request_id=f"r{k}{name}")
            assert sum(e.type == "impression" for e in evs) == len(items)
            clicks[name] += sum(e.type == "click" for e in evs)
    assert clicks["good"] > 1.5 * clicks["bad"]
    assert next(sim.batches(max_events=500)).item.tolist() == before
    evs = sim.respond("u0", ["nope", good[0]], now, request_id="r", impressions=False)
    assert all(e.item_id != "nope" and e.type != "impression" and e.request_id == "r" for e in evs)
    with pytest.raises(KeyError, match="u99999"):
        sim.respond("u99999", good, now, request_id="r")


def test_write_jsonl_round_trips_through_the_training_loader(tmp_path: Path) -> None:
    from models.simlog import load_simulator

    sim = Simulator(SMALL)
    n_events, n_items = write_jsonl(sim, tmp_path / "events.jsonl", tmp_path / "items.jsonl", max_events=3_000)
    assert n_events == 3_000 and n_items >= SMALL.n_items * 0.85
    log = load_simulator(tmp_path / "events.jsonl", tmp_path / "items.jsonl")
    assert len(log.events) == 3_000
    assert 0 < log.impressions.clicked.mean() < 0.2


def test_paced_waits_for_the_rate() -> None:
    now = [0.0]
    slept: list[float] = []

    def sleep(s: float) -> None:
        slept.append(s)
        now[0] += s

    out = list(paced(range(1000), 500.0, clock=lambda: now[0], sleep=sleep))
    assert out == list(range(1000)) and now[0] == pytest.approx(1.8)
