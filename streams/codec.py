"""orjson codecs between Kafka bytes and records; decoding failures become :class:`DecodeError`."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, TypeVar

import orjson
from pydantic import BaseModel, ValidationError

from streams.errors import DecodeError
from streams.records import DeadLetter, Event, ItemUpdate, RecommendRequest
from streams.settings import ValidationSettings

M = TypeVar("M", bound=BaseModel)
_PAYLOAD_KEEP = 2048


def encode(record: BaseModel) -> bytes:
    """Serialise a record to compact JSON (UTC timestamps in RFC 3339)."""
    return orjson.dumps(record.model_dump(mode="python", exclude_none=True), option=orjson.OPT_UTC_Z)


def load_json(raw: bytes | None, limits: ValidationSettings) -> dict[str, Any]:
    """Parse a message value into a JSON object, enforcing the size limit."""
    if raw is None:
        raise DecodeError("empty", "message has no value")
    if len(raw) > limits.max_event_bytes:
        raise DecodeError("too_large", f"{len(raw)} bytes exceeds the limit of {limits.max_event_bytes}")
    try:
        obj = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise DecodeError("not_json", str(exc)) from exc
    if not isinstance(obj, dict):
        raise DecodeError("not_object", f"expected a JSON object, got {type(obj).__name__}")
    return obj


def validate(model: type[M], obj: dict[str, Any]) -> M:
    """Validate a parsed JSON object into ``model``; the error lists every offending field."""
    try:
        return model.model_validate(obj)
    except ValidationError as exc:
        parts = [f"{'.'.join(str(p) for p in e['loc']) or '<root>'}: {e['msg']}" for e in exc.errors()]
        reason = "unknown_type" if any(e["loc"] == ("type",) for e in exc.errors()) else "invalid"
        raise DecodeError(reason, "; ".join(parts)) from exc


def _check_time(ts: datetime, now: float, limits: ValidationSettings, field: str) -> None:
    skew = ts.timestamp() - now
    if skew > limits.max_future_skew_s:
        raise DecodeError("future_timestamp", f"{field}={ts.isoformat()} is {skew:.0f} s in the future")


def decode_event(raw: bytes | None, *, now: float, limits: ValidationSettings) -> Event:
    event = validate(Event, load_json(raw, limits))
    _check_time(event.ts, now, limits, "ts")
    if event.price is not None and event.price > limits.max_price:
        raise DecodeError("invalid", f"price={event.price} exceeds max_price={limits.max_price}")
    return event


def decode_item(raw: bytes | None, *, now: float, limits: ValidationSettings) -> ItemUpdate:
    item = validate(ItemUpdate, load_json(raw, limits))
    _check_time(item.created_at, now, limits, "created_at")
    if item.price > limits.max_price:
        raise DecodeError("invalid", f"price={item.price} exceeds max_price={limits.max_price}")
    return item


def decode_request(raw: bytes | None, limits: ValidationSettings) -> RecommendRequest:
    return validate(RecommendRequest, load_json(raw, limits))


def dead_letter(
    exc: DecodeError, *, topic: str, partition: int, offset: int, key: bytes | None, value: bytes | None
) -> DeadLetter:
    """Wrap an undecodable message with its reason and origin."""
    payload = (value or b"")[:_PAYLOAD_KEEP].decode("utf-8", errors="backslashreplace")
    return DeadLetter(
        reason=exc.reason,
        detail=exc.detail,
        topic=topic,
        partition=partition,
        offset=offset,
        key=key.decode("utf-8", errors="backslashreplace") if key is not None else None,
        payload=payload,
        received_at=datetime.now(UTC),
    )
