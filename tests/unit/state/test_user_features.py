"""User features: windows, late events, negatives, sessions, decay, bounds and the codec."""

from __future__ import annotations

import pytest

from state.errors import StateDecodeError
from state.feature_config import EventView, FeatureConfig
from state.features import (
    USER_FEATURE_NAMES,
    USER_ITEM_FEATURE_NAMES,
    apply_events,
    category_affinity,
    decode_state,
    encode_state,
    interacted_items,
    is_idle,
    negative_items,
    new_user_state,
    user_features,
    user_item_features,
    window_counts,
)
from streams.settings import FeatureSettings

T0 = 1_700_000_000.0  # 2023-11-14T22:13:20Z, 20 s after a 5-minute boundary
CFG = FeatureConfig()


def ev(
    i: int,
    typ: str,
    ts: float,
    item: str = "a",
    *,
    session: str | None = "s1",
    cat: str | None = "c1",
    price: float | None = None,
) -> EventView:
    return EventView(f"e{i}", typ, "u", item, ts, session, price, cat)


def test_feature_keys_are_the_declared_names() -> None:
    s = new_user_state("u")
    assert tuple(user_features(s, T0, CFG)) == USER_FEATURE_NAMES
    assert tuple(user_item_features(s, "a", "c1", T0, CFG)) == USER_ITEM_FEATURE_NAMES
    assert len(set(USER_FEATURE_NAMES)) == len(USER_FEATURE_NAMES) == 28


def test_config_from_settings_keeps_settings_and_overrides() -> None:
    cfg = FeatureConfig.from_settings(FeatureSettings(last_n=5), lateness_s=10.0)
    assert (cfg.last_n, cfg.dedupe_ring, cfg.lateness_s) == (5, 64, 10.0)
    with pytest.raises(ValueError, match="weights"):
        FeatureConfig(affinity_weights=(1.0,))


def test_windows_count_whole_buckets() -> None:
    assert T0 % 300 == 200  # T0 sits 200 s into a five-minute bucket
    s = new_user_state("u")
    apply_events(s, [ev(i, "view", t) for i, t in enumerate((T0, T0 + 100, T0 + 3000))], CFG)
    f = user_features(s, T0 + 3060, CFG)
    assert (f["n_view_1h"], f["n_view_24h"], f["n_view_7d"]) == (3.0, 3.0, 3.0)
    # 1 h = the 12 five-minute buckets ending with now's: T0's bucket leaves at T0 + 3400.
    assert window_counts(s, T0 + 3399)[0][0] == 3
    assert window_counts(s, T0 + 3400)[0][0] == 2
    apply_events(s, [ev(7, "view", T0 + 3 * 3600), ev(8, "click", T0 + 2 * 86400)], CFG)
    counts = window_counts(s, T0 + 2 * 86400 + 10)
    assert [row[0] for row in counts] == [0, 0, 4]
    assert [row[1] for row in counts] == [1, 1, 1]
    assert user_features(s, T0 + 8 * 86400, CFG)["n_click_7d"] == 1.0
    assert user_features(s, T0 + 8 * 86400, CFG)["n_view_7d"] == 0.0


def test_duplicates_are_skipped_and_counted_once() -> None:
    s = new_user_state("u")
    evs = [ev(1, "view", T0), ev(2, "click", T0 + 1)]
    assert apply_events(s, evs + evs, CFG) == 2
    assert apply_events(s, evs, CFG) == 0
    assert user_features(s, T0 + 2, CFG)["lifetime_events"] == 2.0


def test_late_rule_accepts_within_lateness_and_drops_behind_it() -> None:
    s = new_user_state("u")
    apply_events(s, [ev(1, "view", T0 + 1000)], CFG)
    assert apply_events(s, [ev(2, "view", T0 + 1000 - CFG.lateness_s)], CFG) == 1
    assert apply_events(s, [ev(3, "view", T0 + 1000 - CFG.lateness_s - 0.001)], CFG) == 0
    assert user_features(s, T0 + 1001, CFG)["n_view_1h"] == 2.0


def test_late_rule_drops_events_behind_the_forgotten_ids() -> None:
    cfg = FeatureConfig(dedupe_ring=4)
    s = new_user_state("u")
    apply_events(s, [ev(i, "view", T0 + i) for i in range(10)], cfg)
    assert len(s.ring) == 4 and s.floor[0] == int((T0 + 5) * 1000)
    assert apply_events(s, [ev(99, "view", T0 + 5.0)], cfg) == 0  # behind the newest forgotten id
    assert apply_events(s, [ev(98, "view", T0 + 6.5)], cfg) == 1  # out of order, but remembered range
    assert apply_events(s, [ev(3, "view", T0 + 3)], cfg) == 0  # a replay of a forgotten event


def test_out_of_order_events_land_in_time_order() -> None:
    s = new_user_state("u")
    apply_events(s, [ev(1, "view", T0 + 10, "x"), ev(2, "view", T0 + 5, "y"), ev(3, "view", T0 + 7, "z")], CFG)
    assert [item for _, _, item in s.last_n] == ["y", "z", "x"]
    f = user_features(s, T0 + 20, CFG)
    assert (f["secs_since_last"], f["last_gap_s"], f["mean_gap_s"]) == (10.0, 3.0, 2.5)


def test_negative_impressions_are_shown_and_not_engaged() -> None:
    s = new_user_state("u")
    evs = [
        ev(1, "impression", T0, "a"),
        ev(2, "impression", T0, "b"),
        ev(3, "impression", T0, "c"),
        ev(4, "click", T0 + 5, "b"),
        ev(5, "view", T0 + 6, "c"),
        ev(6, "impression", T0 + 100, "d"),
    ]
    apply_events(s, evs, CFG)
    assert negative_items(s, T0 + 100, CFG) == ["c", "a"]  # d is still within the grace period
    assert negative_items(s, T0 + 200, CFG) == ["d", "c", "a"]
    assert user_features(s, T0 + 200, CFG)["n_negative_impressions"] == 3.0
    assert user_item_features(s, "a", "c1", T0 + 200, CFG)["ui_negative_impression"] == 1.0
    assert "a" not in interacted_items(s) and {"b", "c"} <= interacted_items(s)


def test_sessions_by_id_and_by_gap() -> None:
    s = new_user_state("u")
    apply_events(
        s,
        [
            ev(1, "view", T0, session="s1"),
            ev(2, "view", T0 + 50, session="s1"),
            ev(3, "view", T0 + 60, session="s2"),
            ev(4, "view", T0 + 30, session="s1"),
        ],
        CFG,
    )
    f = user_features(s, T0 + 61, CFG)
    assert (f["session_length"], f["session_duration_s"]) == (1.0, 0.0)
    g = new_user_state("v")
    gap = CFG.session_gap_s
    apply_events(
        g,
        [
            ev(1, "view", T0, session=None),
            ev(2, "view", T0 + gap, session=None),
            ev(3, "view", T0 + 2 * gap + 1, session=None),
            ev(4, "view", T0 + 2 * gap + 2, session=None),
        ],
        CFG,
    )
    h = user_features(g, T0 + 3 * gap, CFG)
    assert (h["session_length"], h["session_duration_s"]) == (2.0, 1.0)


def test_category_affinity_decays_by_half_life() -> None:
    s = new_user_state("u")
    apply_events(s, [ev(1, "view", T0, cat="c1"), ev(2, "purchase", T0, cat="c2")], CFG)
    hl = CFG.affinity_half_life_s
    assert category_affinity(s, T0 + hl, CFG) == pytest.approx({"c1": 0.5, "c2": 4.0})
    f = user_features(s, T0 + hl, CFG)
    assert f["top_category_share"] == pytest.approx(8 / 9)
    assert user_item_features(s, "x", "c2", T0 + hl, CFG)["ui_category_share"] == pytest.approx(8 / 9)


def test_rebase_keeps_decayed_values_exact() -> None:
    cfg = FeatureConfig(affinity_half_life_s=60.0)
    s = new_user_state("u")
    apply_events(s, [ev(1, "view", T0, cat="c1", price=10.0)], cfg)
    apply_events(s, [ev(2, "view", T0 + 100 * 60, cat="c2", price=30.0)], cfg)
    assert s.ref_ms > int(T0 * 1000)  # moved forward: weights stay small
    aff = category_affinity(s, T0 + 100 * 60, cfg)
    assert aff["c2"] == pytest.approx(1.0) and aff["c1"] == pytest.approx(2.0**-100)
    assert user_features(s, T0 + 6000, cfg)["avg_price"] == pytest.approx(30.0)


def test_state_is_bounded() -> None:
    cfg = FeatureConfig()
    s = new_user_state("u")
    types = ("view", "click", "add_to_cart", "purchase", "impression")
    evs = [ev(i, types[i % 5], T0 + i * 97.0, f"i{i}", cat=f"c{i % 50}", price=1.0) for i in range(20_000)]
    assert apply_events(s, evs, cfg) == 20_000
    assert len(s.last_n) == cfg.last_n and len(s.ring) <= cfg.dedupe_ring
    assert len(s.impressions) == cfg.max_impressions and len(s.purchased) == cfg.max_purchased
    assert len(s.affinity) <= cfg.max_categories
    assert [len(b) for b in s.buckets] == [12, 24, 28]
    assert len(encode_state(s)) < 6000


def test_idle_users_can_be_dropped() -> None:
    s = new_user_state("u")
    assert is_idle(s, T0, CFG)
    apply_events(s, [ev(1, "view", T0)], CFG)
    assert not is_idle(s, T0 + CFG.idle_ttl_s, CFG)
    assert is_idle(s, T0 + CFG.idle_ttl_s + 1, CFG)


def test_codec_round_trip_and_errors() -> None:
    s = new_user_state("ü-1")
    assert decode_state(encode_state(s)).user_id == "ü-1"
    apply_events(s, [ev(1, "purchase", T0, price=3.5), ev(2, "impression", T0 + 1, "b")], CFG)
    raw = encode_state(s)
    again = decode_state(raw)
    assert encode_state(again) == raw
    assert user_features(again, T0 + 9, CFG) == user_features(s, T0 + 9, CFG)
    for bad in (b"nope", b"[2]", b'[1, "u"]', b"{}"):
        with pytest.raises(StateDecodeError):
            decode_state(bad)


def test_from_event_flattens_a_record() -> None:
    from datetime import UTC, datetime

    from streams.records import Event

    e = Event(
        event_id="x",
        type="click",
        user_id="u",
        item_id="i",
        ts=datetime.fromtimestamp(T0, UTC),
        session_id="s",
        price=2.0,
        position=3,
        request_id="r",
    )
    v = EventView.from_event(e, "cat")
    assert (v.ts, v.category, v.position, v.request_id, v.price) == (T0, "cat", 3, "r", 2.0)
