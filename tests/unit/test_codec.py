"""Bad input at the edge: every malformed event gets a precise reason; good ones round-trip."""

from __future__ import annotations

from datetime import UTC, datetime

import orjson
import pytest

from streams.codec import dead_letter, decode_event, decode_item, encode
from streams.errors import DecodeError
from streams.records import Event
from streams.settings import ValidationSettings

NOW = datetime(2026, 11, 20, tzinfo=UTC).timestamp()
LIMITS = ValidationSettings()
GOOD = {"event_id": "e1", "type": "click", "user_id": "u1", "item_id": "i1", "ts": "2026-11-19T00:00:00Z"}


def raw(**changes: object) -> bytes:
    obj = {**GOOD, **changes}
    return orjson.dumps({k: v for k, v in obj.items() if v is not None})


def reason_of(value: bytes | None) -> str:
    with pytest.raises(DecodeError) as info:
        decode_event(value, now=NOW, limits=LIMITS)
    return info.value.reason


def test_good_event_round_trips() -> None:
    ev = decode_event(raw(price=9.5, position=3, context={"device": "ios"}), now=NOW, limits=LIMITS)
    assert ev.type == "click" and ev.price == 9.5 and ev.ts == datetime(2026, 11, 19, tzinfo=UTC)
    again = decode_event(encode(ev), now=NOW, limits=LIMITS)
    assert again == ev


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        (None, "empty"),
        (b"{not json", "not_json"),
        (b"[1, 2]", "not_object"),
        (raw(type="teleport"), "unknown_type"),
        (raw(user_id=None), "invalid"),
        (raw(price=-1.0), "invalid"),
        (raw(price=1e9), "invalid"),
        (raw(ts="2026-11-19T00:00:00"), "invalid"),  # naive timestamps are ambiguous
        (raw(ts="2030-01-01T00:00:00Z"), "future_timestamp"),
        (raw(context={"pad": "x" * 20_000}), "too_large"),
    ],
)
def test_malformed_events_are_rejected_with_a_reason(value: bytes | None, reason: str) -> None:
    assert reason_of(value) == reason


def test_detail_names_the_offending_fields() -> None:
    with pytest.raises(DecodeError) as info:
        decode_event(raw(user_id=None, price=-3), now=NOW, limits=LIMITS)
    assert "user_id" in info.value.detail and "price" in info.value.detail


def test_unknown_fields_are_ignored_for_forward_compatibility() -> None:
    ev = decode_event(raw(brand_new_field=1), now=NOW, limits=LIMITS)
    assert isinstance(ev, Event)


def test_item_updates_validate_price_and_time() -> None:
    good = {"item_id": "i1", "category": "c", "price": 3.0, "created_at": "2026-11-01T00:00:00Z"}
    assert decode_item(orjson.dumps(good), now=NOW, limits=LIMITS).price == 3.0
    with pytest.raises(DecodeError):
        decode_item(orjson.dumps({**good, "price": -2}), now=NOW, limits=LIMITS)


def test_dead_letter_keeps_reason_origin_and_payload() -> None:
    exc = DecodeError("not_json", "boom")
    dl = dead_letter(exc, topic="events", partition=3, offset=42, key=b"u1", value=b"\xff garbage")
    assert (dl.reason, dl.topic, dl.partition, dl.offset, dl.key) == ("not_json", "events", 3, 42, "u1")
    assert "garbage" in dl.payload
