"""Precomputed recommendation lists (written by ``streamrec batch-score``), one per user, and their byte format."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import orjson

from state.errors import StateDecodeError

FORMAT_VERSION = 1


@dataclass(frozen=True, slots=True)
class PrecomputedList:
    """A user's ranked ``(item_id, value)`` list, best first, with the model version and job that produced it."""

    user_id: str
    items: tuple[tuple[str, float], ...]
    model_version: str
    job_id: str
    created_at: float

    @classmethod
    def of(
        cls, user_id: str, items: Sequence[tuple[str, float]], *, model_version: str, job_id: str, created_at: float
    ) -> PrecomputedList:
        return cls(user_id, tuple((i, float(s)) for i, s in items), model_version, job_id, created_at)


def encode_precomputed(rec: PrecomputedList) -> bytes:
    """Compact JSON: ``{"v":1,"u":user,"i":[[item,value],...],"m":version,"j":job,"t":unix seconds}``.

    >>> encode_precomputed(PrecomputedList("u1", (("i1", 2.5),), "v0001", "j1", 10.0))
    b'{"v":1,"u":"u1","i":[["i1",2.5]],"m":"v0001","j":"j1","t":10.0}'
    """
    doc = {
        "v": FORMAT_VERSION,
        "u": rec.user_id,
        "i": rec.items,
        "m": rec.model_version,
        "j": rec.job_id,
        "t": rec.created_at,
    }
    return orjson.dumps(doc)


def decode_precomputed(raw: bytes) -> PrecomputedList:
    """Inverse of :func:`encode_precomputed`; raises ``StateDecodeError`` on bytes of another format.

    >>> decode_precomputed(encode_precomputed(PrecomputedList("u1", (("i1", 2.5),), "v1", "j", 1.0))).items
    (('i1', 2.5),)
    """
    try:
        doc = orjson.loads(raw)
        if doc["v"] != FORMAT_VERSION:
            raise StateDecodeError(f"precomputed list format {doc['v']!r}, expected {FORMAT_VERSION}")
        items = tuple((str(i), float(s)) for i, s in doc["i"])
        return PrecomputedList(str(doc["u"]), items, str(doc["m"]), str(doc["j"]), float(doc["t"]))
    except (orjson.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
        raise StateDecodeError(f"undecodable precomputed list {raw[:80]!r}: {exc}") from exc
