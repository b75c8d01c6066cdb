"""The stream (the events agent's batch function over the store) and the training-side feature code agree.

Offline is what ``streamrec train`` does: the event log and catalog as JSONL files, read by
``models.simlog.load_simulator`` and folded by ``models.ranker_features.PointInTimeFeatures``.
Online is ``agents.events.process_batch`` driven batch by batch with a fake clock, redeliveries and
producer-local reordering included. Both must give the same user features and item statistics.
"""

from __future__ import annotations

import asyncio
import math
import random
import tempfile
from datetime import UTC, datetime
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from models.ranker_features import PointInTimeFeatures, item_features
from models.simlog import load_simulator
from state.feature_config import FeatureConfig
from state.features import encode_state, negative_items, user_features
from streams.codec import encode
from streams.records import EVENT_TYPES, Event, ItemUpdate
from streams.settings import load_settings
from tests.stream_driver import StreamDriver, wire

T0 = 1_700_000_000.0
CATALOG = [
    ItemUpdate(
        item_id=f"i{k}",
        category=f"c{k % 3}",
        brand="b",
        price=5.0 + k,
        created_at=datetime.fromtimestamp(T0 - 86_400, UTC),
    )
    for k in range(5)
]
ITEMS = [f"i{k}" for k in range(8)]  # i5..i7 are not in the catalog
_GAPS = st.one_of(st.just(0.0), st.floats(0, 30, allow_nan=False), st.sampled_from([301.0, 1790.0, 3600.0, 86_400.0]))
LATENESS_S = FeatureConfig().lateness_s


@st.composite
def event_logs(draw: st.DrawFn, session_ids: bool = False) -> list[Event]:
    """Time-ordered events of a few users; equal timestamps are common, sessions are contiguous in time.

    Without ``session_ids`` some events carry no session id (sessions then follow the 30-minute gap rule).
    """
    gaps = draw(st.lists(_GAPS, min_size=1, max_size=120))
    out: list[Event] = []
    ts = T0
    for i, gap in enumerate(gaps):
        ts = round(ts + gap, 3)
        user = draw(st.sampled_from(["u0", "u1", "u2", "u3"]))
        named = f"s-{user}-{int(ts // 1800)}"
        session = named if session_ids else draw(st.sampled_from([named, None]))
        out.append(
            Event(
                event_id=f"e{i}",
                type=draw(st.sampled_from(EVENT_TYPES)),
                user_id=user,
                item_id=draw(st.sampled_from(ITEMS)),
                ts=datetime.fromtimestamp(ts, UTC),
                session_id=session,
                price=draw(st.sampled_from([None, 3.0, 12.5])),
            )
        )
    return out


def arrival_order(events: list[Event], rnd: random.Random, reorder: bool) -> list[Event]:
    """What the topic holds: redeliveries of earlier events and (``reorder``) producer-local reordering
    of up to 5 events spanning less than the lateness."""
    out: list[Event] = []
    i = 0
    while i < len(events):
        j = i + 1
        while (
            reorder and j < len(events) and j - i < 5 and (events[j].ts - events[i].ts).total_seconds() < LATENESS_S - 1
        ):
            j += 1
        chunk = events[i:j]
        rnd.shuffle(chunk)
        out += chunk
        i = j
    for _ in range(rnd.randint(0, 8)):
        k = rnd.randrange(len(out))
        out.insert(rnd.randint(k + 1, len(out)), out[k])
    return out


def offline(log_lines: list[bytes], cfg: FeatureConfig) -> PointInTimeFeatures:
    """The training path: JSONL files -> load_simulator -> point-in-time folding of every event."""
    with tempfile.TemporaryDirectory() as tmp:
        events, catalog = Path(tmp) / "events.jsonl", Path(tmp) / "catalog.jsonl"
        events.write_bytes(b"\n".join(log_lines) + b"\n")
        catalog.write_bytes(b"\n".join(encode(u) for u in CATALOG) + b"\n")
        sim = load_simulator(events, catalog)
    feats = PointInTimeFeatures(sim, cfg)
    for e in sim.events:
        feats.observe(e)
    return feats


async def online(arrived: list[Event], sizes: list[int], now: float) -> StreamDriver:
    driver = StreamDriver(now)
    await driver.load_catalog(CATALOG)
    await driver.consume_in_batches(driver.produce([wire(e) for e in arrived]), sizes)
    return driver


def assert_close(a: dict[str, float], b: dict[str, float], what: str) -> None:
    assert a.keys() == b.keys()
    for k, v in a.items():
        assert math.isclose(v, b[k], rel_tol=1e-9, abs_tol=1e-9), (what, k, v, b[k])


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(events=event_logs(), seed=st.integers(0, 2**32 - 1), wait=st.floats(0, 3 * 86_400))
def test_stream_features_equal_training_features(events: list[Event], seed: int, wait: float) -> None:
    check_parity(events, arrival_order(events, random.Random(seed), reorder=False), seed, wait)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(events=event_logs(session_ids=True), seed=st.integers(0, 2**32 - 1), wait=st.floats(0, 3 * 86_400))
def test_reordered_arrivals_with_session_ids_give_training_features(
    events: list[Event], seed: int, wait: float
) -> None:
    # Gap-based sessions (no session id) depend on arrival order; see test_lateness and docs/streaming-state.md.
    check_parity(events, arrival_order(events, random.Random(seed), reorder=True), seed, wait)


def check_parity(events: list[Event], arrived: list[Event], seed: int, wait: float) -> None:
    rnd = random.Random(seed)
    sizes = [rnd.randint(1, 25) for _ in arrived]
    last = max(e.ts.timestamp() for e in events)
    driver = asyncio.run(online(arrived, sizes, now=last + 1.0))
    train = offline([encode(e) for e in arrived], driver.rt.features)
    now = last + wait
    assert sorted(train.users) == sorted({e.user_id for e in events})
    for user, want in train.users.items():
        got = driver.user(user)
        assert got is not None
        assert_close(user_features(got, now, driver.rt.features), user_features(want, now, train.cfg), user)
        assert got.last_n == want.last_n and got.impressions == want.impressions and got.purchased == want.purchased
        assert negative_items(got, now, driver.rt.features) == negative_items(want, now, train.cfg)
        stored = asyncio.run(driver.store.read_user(user))
        assert stored is not None and encode_state(stored) == encode_state(got)
    records = asyncio.run(driver.store.read_items([u.item_id for u in CATALOG]))
    for rec in records:
        assert rec is not None
        want_rec = train.catalog[rec.item_id]
        assert rec.counts == want_rec.counts, rec.item_id
        assert item_features(rec, now) == item_features(want_rec, now)


def test_training_uses_the_feature_config_workers_run_with() -> None:
    # build_ranker_data defaults to FeatureConfig(); workers build theirs from the settings tree.
    assert FeatureConfig.from_settings(load_settings().features) == FeatureConfig()
