"""In-memory online store: the fake that ships with the code, with the same semantics as Redis."""

from __future__ import annotations

import heapq
from collections.abc import Sequence

from state.store_base import PlannedStore
from state.store_ops import (
    ExpireOp,
    GetMany,
    HGetAll,
    HGetMany,
    HIncrOp,
    HMaxOp,
    ReadOp,
    ReadResult,
    SetOp,
    WriteOp,
    ZAbove,
    ZAddOp,
    ZIncrOp,
    ZRemOp,
    ZTrimOp,
)
from streams.clock import Clock

_DAY = 24 * 3600


class MemoryFeatureStore(PlannedStore):
    """Dicts instead of Redis; keys and encodings are those of ``RedisFeatureStore``.

    Expiry follows ``clock`` (no clock: nothing expires).  Values are stored encoded, so a
    reader never shares objects with a writer.
    """

    def __init__(
        self,
        *,
        clock: Clock | None = None,
        key_prefix: str = "sr",
        user_ttl_s: int = 7 * _DAY,
        popularity_half_life_s: float = 6 * 3600.0,
    ) -> None:
        super().__init__(key_prefix, user_ttl_s, popularity_half_life_s)
        self._clock = clock
        self.strings: dict[str, bytes] = {}
        self.hashes: dict[str, dict[str, int]] = {}
        self.zsets: dict[str, dict[str, float]] = {}
        self.expires: dict[str, float] = {}
        self.closed = False

    def _alive(self, key: str) -> bool:
        at = self.expires.get(key)
        if at is None or self._clock is None or self._clock.now() < at:
            return True
        self.strings.pop(key, None)
        self.hashes.pop(key, None)
        self.zsets.pop(key, None)
        del self.expires[key]
        return False

    async def _execute(self, ops: Sequence[WriteOp]) -> None:
        for op in ops:
            self._apply(op)

    def _apply(self, op: WriteOp) -> None:
        now = self._clock.now() if self._clock is not None else 0.0
        if isinstance(op, SetOp):
            self.strings[op.key] = op.value
            if op.ttl_s is None:
                self.expires.pop(op.key, None)
            else:
                self.expires[op.key] = now + op.ttl_s
        elif isinstance(op, HIncrOp):
            h = self.hashes.setdefault(op.key, {})
            h[op.field] = h.get(op.field, 0) + op.amount
        elif isinstance(op, HMaxOp):
            h = self.hashes.setdefault(op.key, {})
            for f, v in op.values.items():
                h[f] = max(v, h.get(f, v))
        elif isinstance(op, ExpireOp):
            if op.key in self.strings or op.key in self.hashes or op.key in self.zsets:
                self.expires[op.key] = now + op.ttl_s
        else:
            self._apply_zset(op)

    def _apply_zset(self, op: ZIncrOp | ZAddOp | ZRemOp | ZTrimOp) -> None:
        self._alive(op.key)
        z = self.zsets.setdefault(op.key, {})
        if isinstance(op, ZIncrOp):
            z[op.member] = z.get(op.member, 0.0) + op.amount
        elif isinstance(op, ZAddOp):
            z.update(op.scores)
        elif isinstance(op, ZRemOp):
            for m in op.members:
                z.pop(m, None)
        elif len(z) > op.keep:
            keep = set(m for m, _ in _top(z, op.keep))
            for m in [m for m in z if m not in keep]:
                del z[m]
        if not z:
            del self.zsets[op.key]

    async def _read(self, ops: Sequence[ReadOp]) -> list[ReadResult]:
        return [self._read_one(op) for op in ops]

    def _read_one(self, op: ReadOp) -> ReadResult:
        if isinstance(op, GetMany):
            return [self.strings.get(k) if self._alive(k) else None for k in op.keys]
        if isinstance(op, HGetMany):
            h = self.hashes.get(op.key, {}) if self._alive(op.key) else {}
            return [h.get(f) for f in op.fields]
        if isinstance(op, HGetAll):
            h = self.hashes.get(op.key, {}) if self._alive(op.key) else {}
            return {f: str(v) for f, v in h.items()}
        z = self.zsets.get(op.key, {}) if self._alive(op.key) else {}
        if isinstance(op, ZAbove):
            return [m for m, _ in _top({m: s for m, s in z.items() if s > op.above}, op.n)]
        return _top(z, op.n)

    async def _scan(self, prefix: str, cursor: str | None, count: int) -> tuple[str | None, list[str]]:
        # The cursor is the last key returned, so keys deleted meanwhile never make the scan skip one.
        keys = sorted(k for k in self.strings if k.startswith(prefix) and (cursor is None or k > cursor))
        page = [k for k in keys[:count] if self._alive(k)]
        more = len(keys) > count
        return (keys[count - 1] if more else None), [k[len(prefix) :] for k in page]

    async def ping(self) -> bool:
        return not self.closed

    async def close(self) -> None:
        self.closed = True


def _top(z: dict[str, float], n: int) -> list[tuple[str, float]]:
    # Redis orders equal scores by member, descending, in ZREVRANGE.
    return [(m, s) for s, m in heapq.nlargest(n, ((s, m) for m, s in z.items()))]
