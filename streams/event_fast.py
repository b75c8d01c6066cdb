"""A fast path for the common, canonical event: plain-typed fields checked by hand, built without pydantic.

An event is taken by the fast path only when every field it carries has the exact JSON type and shape
that ``Event`` validation would accept unchanged (ids of 1..128 characters, a known type, an RFC 3339
timestamp with an offset, a non-negative number price, a non-negative integer position, no context).
Anything else returns None and goes through full ``Event`` validation, which then accepts, coerces or
rejects it with the usual reasons.  So both paths yield equal records for what the fast one takes,
and errors are the pydantic ones.
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any

from streams.records import EVENT_TYPES, SCHEMA_VERSION, Event

_TYPES = frozenset(EVENT_TYPES)
_REQUIRED_IDS = ("event_id", "user_id", "item_id")
_OPTIONAL_IDS = ("session_id", "request_id")
_KNOWN = frozenset(Event.model_fields)
_MAX_ID = 128
_MAX_EXACT = 2**53  # larger (integer) prices take the full path: float() of them need not round the same
# The RFC 3339 subset both ``datetime.fromisoformat`` and pydantic read the same way.
_RFC3339 = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d{1,6})?(?:Z|[+-]\d\d:\d\d)\Z")


def _is_id(v: object) -> bool:
    return type(v) is str and 0 < len(v) <= _MAX_ID


def _ts(v: object) -> datetime | None:
    if type(v) is not str or _RFC3339.match(v) is None:
        return None
    try:
        ts = datetime.fromisoformat(v)
    except ValueError:
        return None
    return ts if ts.tzinfo is not None else None


def _optional_ok(obj: dict[str, Any]) -> bool:
    for name in _OPTIONAL_IDS:
        v = obj.get(name)
        if v is not None and not _is_id(v):
            return False
    price = obj.get("price")
    if price is not None and (type(price) not in (int, float) or not 0 <= price <= _MAX_EXACT):
        return False
    position = obj.get("position")
    if position is not None and (type(position) is not int or position < 0):
        return False
    context = obj.get("context", {})
    return type(context) is dict and not context


def fast_event(obj: dict[str, Any]) -> Event | None:
    """``Event`` from a parsed JSON object when it is canonical (see the module doc), else None.

    >>> e = fast_event({"event_id": "e1", "type": "view", "user_id": "u", "item_id": "i",
    ...                 "ts": "2026-11-24T12:00:00Z"})
    >>> (e.event_id, e.ts.timestamp())
    ('e1', 1795521600.0)
    >>> fast_event({"event_id": "e1", "type": "view", "user_id": "u", "item_id": 7, "ts": "x"}) is None
    True
    """
    if obj.get("schema_version", SCHEMA_VERSION) is not SCHEMA_VERSION or obj.get("type") not in _TYPES:
        return None
    if not all(_is_id(obj.get(name)) for name in _REQUIRED_IDS) or not _optional_ok(obj):
        return None
    ts = _ts(obj.get("ts"))
    if ts is None:
        return None
    fields = {k: v for k, v in obj.items() if k in _KNOWN and v is not None}
    fields["ts"] = ts
    if type(fields.get("price")) is int:
        fields["price"] = float(fields["price"])
    return Event.model_construct(**fields)
