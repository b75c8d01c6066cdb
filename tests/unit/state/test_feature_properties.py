"""Property tests: the stream (batched, replayed, locally reordered, persisted between batches) equals offline."""

from __future__ import annotations

import math
import random

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from state.feature_config import EventView, FeatureConfig
from state.features import (
    apply_events,
    decode_state,
    encode_state,
    interacted_items,
    negative_items,
    new_user_state,
    user_features,
    window_counts,
)
from state.user_state import WINDOWS, UserState, to_ms
from streams.records import EVENT_TYPES

T0 = 1_700_000_000.0
CFG = FeatureConfig(affinity_half_life_s=900.0)  # short, so long streams also exercise the rebase
_GAPS = st.one_of(st.floats(0, 40, allow_nan=False), st.sampled_from([0.0, 301.0, 3600.0, 86_400.0, 40_000.0]))


@st.composite
def event_streams(draw: st.DrawFn) -> list[EventView]:
    """Time-ordered events of one user; sessions are contiguous in time, as in real traffic."""
    gaps = draw(st.lists(_GAPS, min_size=1, max_size=90))
    out: list[EventView] = []
    ts = T0
    for i, gap in enumerate(gaps):
        ts = round(ts + gap, 3)
        typ = draw(st.sampled_from(EVENT_TYPES))
        item = draw(st.sampled_from("abcdefgh"))
        cat = draw(st.sampled_from(["c1", "c2", "c3", None]))
        price = draw(st.sampled_from([None, 5.0, 12.5]))
        out.append(EventView(f"e{i}", typ, "u", item, ts, f"s{int(ts // 1800)}", price, cat))
    return out


def offline(events: list[EventView], cfg: FeatureConfig = CFG) -> UserState:
    s = new_user_state("u")
    apply_events(s, events, cfg)
    return s


def assert_same_features(a: UserState, b: UserState, now: float) -> None:
    fa, fb = user_features(a, now, CFG), user_features(b, now, CFG)
    for k in fa:
        assert math.isclose(fa[k], fb[k], rel_tol=1e-9, abs_tol=1e-9), (k, fa[k], fb[k])
    assert interacted_items(a) == interacted_items(b)
    assert negative_items(a, now, CFG) == negative_items(b, now, CFG)
    assert a.last_n == b.last_n and a.impressions == b.impressions and a.purchased == b.purchased


def shuffle_locally(events: list[EventView], rnd: random.Random) -> list[EventView]:
    """Reorder within runs of at most 6 events spanning under the lateness, as producer skew does."""
    out: list[EventView] = []
    i = 0
    while i < len(events):
        j = i + 1
        while j < len(events) and j - i < 6 and events[j].ts - events[i].ts < CFG.lateness_s - 1:
            j += 1
        chunk = events[i:j]
        rnd.shuffle(chunk)
        out += chunk
        i = j
    return out


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(events=event_streams(), seed=st.integers(0, 2**32 - 1), wait=st.floats(0, 9 * 86_400))
def test_stream_equals_offline(events: list[EventView], seed: int, wait: float) -> None:
    rnd = random.Random(seed)
    arrived = shuffle_locally(events, rnd)
    for _ in range(rnd.randint(0, 10)):  # redeliveries, anywhere after the original
        k = rnd.randrange(len(arrived))
        arrived.insert(rnd.randint(k + 1, len(arrived)), arrived[k])
    state = new_user_state("u")
    applied, i = 0, 0
    while i < len(arrived):
        j = i + rnd.randint(1, 12)
        applied += apply_events(state, arrived[i:j], CFG)
        state = decode_state(encode_state(state))  # the table and Redis persist between batches
        i = j
    assert applied == len(events)
    now = events[-1].ts + wait
    assert_same_features(state, offline(events), now)


@settings(max_examples=100, deadline=None)
@given(events=event_streams())
def test_replaying_everything_changes_nothing(events: list[EventView]) -> None:
    state = offline(events)
    before = encode_state(state)
    assert apply_events(state, events, CFG) == 0
    assert apply_events(state, events[::-1], CFG) == 0
    assert encode_state(state) == before


@settings(max_examples=100, deadline=None)
@given(events=event_streams(), wait=st.floats(0, 9 * 86_400))
def test_window_counts_equal_a_recount_from_the_log(events: list[EventView], wait: float) -> None:
    now = events[-1].ts + wait
    got = window_counts(offline(events), now)
    now_ms = to_ms(now)
    for (width, n), row in zip(WINDOWS, got, strict=True):
        top = now_ms // width
        want = [sum(1 for e in events if e.type == t and top - n < to_ms(e.ts) // width <= top) for t in EVENT_TYPES]
        assert row == want
