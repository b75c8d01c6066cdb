"""Compact, versioned bytes for ``UserState`` (orjson arrays, times as ms offsets from the newest event).

Layout of schema 1, a JSON array::

    [1, user_id, newest_ms, total, floor_dt, floor_hash, ring, last_n, impressions, purchased,
     buckets_5m, buckets_1h, buckets_6h, ref_dt, affinity, price_sum, price_cnt,
     session_id, session_start_dt, session_last_dt, session_len]

``*_dt`` are ``newest_ms - t``; the ring is base64 of big-endian 64-bit words ``dt << 40 | hash``
(ring entries are never older than the lateness, so ``dt`` fits 24 bits); lists are flattened: last_n
``[dt, type, item, ...]``, impressions and purchased ``[dt, item, ...]``, buckets
``[newest_bucket - bucket, n_view, n_click, n_cart, n_purchase, n_impression, ...]``,
affinity ``[category, forward-decayed sum, ...]``.
"""

from __future__ import annotations

import base64
import heapq
import struct
from typing import Any

import orjson

from state.errors import StateDecodeError
from state.user_state import N_TYPES, NO_TIME, WINDOWS, UserState

SCHEMA = 1


def encode_state(state: UserState) -> bytes:
    """Serialise ``state``; deterministic for equal states."""
    nw = state.newest_ms
    ring = sorted(state.ring)
    buckets: list[list[int]] = []
    for (width, _), rows in zip(WINDOWS, state.buckets, strict=True):
        top = nw // width
        flat: list[int] = []
        for b in sorted(rows, reverse=True):
            flat.append(top - b)
            flat.extend(rows[b])
        buckets.append(flat)
    doc: list[Any] = [
        SCHEMA,
        state.user_id,
        nw,
        state.total,
        _dt(nw, state.floor[0]),
        state.floor[1],
        _pack_ring(nw, ring),
        [x for ts, t, item in state.last_n for x in (nw - ts, t, item)],
        [x for ts, item in state.impressions for x in (nw - ts, item)],
        [x for item, ts in sorted(state.purchased.items(), key=lambda kv: (kv[1], kv[0])) for x in (nw - ts, item)],
        *buckets,
        _dt(nw, state.ref_ms),
        [x for c in sorted(state.affinity) for x in (c, state.affinity[c])],
        state.price_sum,
        state.price_cnt,
        state.session_id,
        _dt(nw, state.session_start_ms),
        _dt(nw, state.session_last_ms),
        state.session_len,
    ]
    return orjson.dumps(doc)


def decode_state(raw: bytes) -> UserState:
    """Rebuild a state from :func:`encode_state` bytes; raises ``StateDecodeError`` on anything else."""
    try:
        doc = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise StateDecodeError(f"user state is not JSON: {raw[:40]!r}") from exc
    if not isinstance(doc, list) or not doc or doc[0] != SCHEMA:
        raise StateDecodeError(f"unknown user state schema: {raw[:40]!r}")
    try:
        return _build(doc)
    except (ValueError, TypeError, IndexError, struct.error) as exc:
        raise StateDecodeError(f"corrupt user state ({exc}): {raw[:60]!r}") from exc


_HASH_BITS = 40
_HASH_MASK = (1 << _HASH_BITS) - 1
MAX_RING_DT_MS = (1 << 24) - 1


def _pack_ring(newest: int, ring: list[tuple[int, int]]) -> str:
    words = [(newest - ts) << _HASH_BITS | h for ts, h in ring]
    return base64.b64encode(struct.pack(f">{len(words)}Q", *words)).decode("ascii")


def _unpack_ring(newest: int, packed: str) -> list[tuple[int, int]]:
    raw = base64.b64decode(packed, validate=True)
    words = struct.unpack(f">{len(raw) // 8}Q", raw)
    return [(newest - (w >> _HASH_BITS), w & _HASH_MASK) for w in words]


def _dt(newest: int, t: int) -> int | None:
    return None if t == NO_TIME else newest - t


def _t(newest: int, dt: int | None) -> int:
    return NO_TIME if dt is None else newest - int(dt)


def _build(doc: list[Any]) -> UserState:
    if len(doc) != 21:
        raise ValueError(f"expected 21 fields, got {len(doc)}")
    s = UserState(str(doc[1]))
    nw = s.newest_ms = int(doc[2])
    s.total = int(doc[3])
    s.floor = (_t(nw, doc[4]), int(doc[5]))
    s.ring = _unpack_ring(nw, str(doc[6]))
    heapq.heapify(s.ring)
    s.ring_ids = {h for _, h in s.ring}
    ln = doc[7]
    s.last_n = [(nw - int(ln[i]), int(ln[i + 1]), str(ln[i + 2])) for i in range(0, len(ln), 3)]
    im = doc[8]
    s.impressions = [(nw - int(im[i]), str(im[i + 1])) for i in range(0, len(im), 2)]
    pu = doc[9]
    s.purchased = {str(pu[i + 1]): nw - int(pu[i]) for i in range(0, len(pu), 2)}
    step = N_TYPES + 1
    for (width, _), rows, flat in zip(WINDOWS, s.buckets, doc[10:13], strict=True):
        top = nw // width
        for i in range(0, len(flat), step):
            rows[top - int(flat[i])] = [int(c) for c in flat[i + 1 : i + step]]
    s.ref_ms = _t(nw, doc[13])
    aff = doc[14]
    s.affinity = {str(aff[i]): float(aff[i + 1]) for i in range(0, len(aff), 2)}
    s.price_sum, s.price_cnt = float(doc[15]), float(doc[16])
    s.session_id = None if doc[17] is None else str(doc[17])
    s.session_start_ms, s.session_last_ms = _t(nw, doc[18]), _t(nw, doc[19])
    s.session_len = int(doc[20])
    return s
