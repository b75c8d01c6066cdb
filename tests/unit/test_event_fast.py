"""The fast event path agrees with full pydantic validation on every object it accepts, and declines the rest."""

from __future__ import annotations

from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from streams.codec import decode_event
from streams.event_fast import fast_event
from streams.records import EVENT_TYPES, Event
from streams.settings import ValidationSettings

LIMITS = ValidationSettings()
NOW = 1_795_521_600.0

_IDS = st.one_of(
    st.text(min_size=1, max_size=12),
    st.sampled_from(["", "x" * 128, "x" * 129, "é" * 128]),
    st.integers(-3, 3),
    st.none(),
    st.booleans(),
)
_TS = st.one_of(
    st.sampled_from(
        [
            "2026-11-24T12:00:00Z",
            "2026-11-24T12:00:00.5Z",
            "2026-11-24T12:00:00.123456+05:30",
            "2026-11-24T12:00:00-00:00",
            "2026-11-24T12:00:00",
            "2026-11-24",
            "2026-W48-2T12:00:00Z",
            "2026-11-24T24:00:00Z",
            "2026-11-24T12:00:60Z",
            "2026-11-24T12:00:00.1234567Z",
            "2026-11-24 12:00:00Z",
            "1795521600",
        ]
    ),
    st.integers(0, 2_000_000_000),
    st.floats(0, 2e9, allow_nan=False),
    st.none(),
)
_NUM = st.one_of(
    st.none(),
    st.integers(-5, 10**6),
    st.floats(-5, 1e7, allow_nan=False),
    st.sampled_from([True, "3.5", 2**60, 2.0]),
)


_GOOD_TS = st.sampled_from(
    ["2026-11-24T12:00:00Z", "2026-11-24T12:00:00.5Z", "2026-11-24T12:00:00.123456+05:30", "2026-11-24T12:00:00-00:00"]
)


def _field(draw: st.DrawFn, good: st.SearchStrategy[Any], odd: st.SearchStrategy[Any]) -> Any:
    """Mostly a valid value, one time in five an odd one (a wrong type, a bound, a near-miss format)."""
    return draw(odd) if draw(st.integers(0, 4)) == 0 else draw(good)


@st.composite
def objects(draw: st.DrawFn) -> dict[str, Any]:
    ident = st.text(min_size=1, max_size=12)
    obj: dict[str, Any] = {
        "event_id": _field(draw, ident, _IDS),
        "type": _field(draw, st.sampled_from(EVENT_TYPES), st.sampled_from(["VIEW", "like", "", None])),
        "user_id": _field(draw, ident, _IDS),
        "item_id": _field(draw, ident, _IDS),
        "ts": _field(draw, _GOOD_TS, _TS),
    }
    for name in ("session_id", "request_id"):
        if draw(st.booleans()):
            obj[name] = _field(draw, ident, _IDS)
    if draw(st.booleans()):
        obj["price"] = _field(draw, st.floats(0, 1e6, allow_nan=False) | st.integers(0, 10**6), _NUM)
    if draw(st.booleans()):
        obj["position"] = _field(draw, st.integers(0, 100), _NUM)
    if draw(st.booleans()):
        obj["schema_version"] = _field(draw, st.just(1), st.sampled_from([2, 1.0, True, None, "1"]))
    if draw(st.booleans()):
        obj["context"] = _field(draw, st.just({}), st.sampled_from([{"device": "ios"}, None, []]))
    if draw(st.booleans()):
        obj["brand_new_field"] = draw(st.integers())
    if draw(st.integers(0, 9)) == 0:
        obj.pop(draw(st.sampled_from(["event_id", "user_id", "ts", "type"])))
    return obj


@settings(max_examples=600, deadline=None)
@given(objects())
def test_fast_path_equals_validation_where_it_answers(obj: dict[str, Any]) -> None:
    fast = fast_event(obj)
    try:
        full: Event | None = Event.model_validate(obj)
    except ValidationError:
        full = None
    if fast is None:
        return  # declined: full validation decides (accept, coerce or reject), as before
    assert full is not None, f"fast path accepted what validation rejects: {obj}"
    assert fast.model_dump() == full.model_dump()
    assert fast.ts.timestamp() == full.ts.timestamp() and fast.ts.utcoffset() == full.ts.utcoffset()
    assert type(fast.price) is type(full.price)


def test_the_simulators_events_take_the_fast_path() -> None:
    obj = {
        "schema_version": 1,
        "event_id": "e11-0",
        "type": "impression",
        "user_id": "u15370",
        "item_id": "i3593",
        "ts": "2026-12-02T10:11:39.496901Z",
        "session_id": "s11-5",
        "price": 61.86,
        "position": 0,
        "request_id": "r11-80",
    }
    fast = fast_event(obj)
    assert fast is not None and fast == Event.model_validate(obj)


@pytest.mark.parametrize(
    ("obj", "reason"),
    [
        (
            {"event_id": "e", "type": "like", "user_id": "u", "item_id": "i", "ts": "2026-11-24T12:00:00Z"},
            "unknown_type",
        ),
        ({"event_id": "", "type": "view", "user_id": "u", "item_id": "i", "ts": "2026-11-24T12:00:00Z"}, "invalid"),
        ({"event_id": "e", "type": "view", "user_id": "u", "item_id": "i", "ts": "2026-11-24T12:00:00"}, "invalid"),
    ],
)
def test_declined_objects_still_get_the_validation_reasons(obj: dict[str, Any], reason: str) -> None:
    assert fast_event(obj) is None
    from streams.errors import DecodeError

    with pytest.raises(DecodeError) as err:
        decode_event(orjson.dumps(obj), now=NOW, limits=LIMITS)
    assert err.value.reason == reason
