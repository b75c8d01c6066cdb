"""Shared mechanics of online stores: batches become primitive ops, reads decode; backends run primitives."""

from __future__ import annotations

import abc
import math
from collections.abc import Sequence
from typing import cast

import numpy as np
import numpy.typing as npt

from state.item_columns import ItemColumns
from state.items import ItemCounts, ItemRecord, decode_item, encode_item
from state.keys import KeySchema
from state.popularity import generation, generation_scales, period_s, score_now
from state.precomputed import PrecomputedList, decode_precomputed, encode_precomputed
from state.state_codec import decode_state, encode_state
from state.store import CovisitUpdate, DecayedUpdate, DecaySpec, Scored, WriteBatch
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
    ZTop,
    ZTrimOp,
)
from state.user_state import UserState
from state.vectors import decode_vector, encode_vector
from streams.records import EVENT_TYPES

POPULAR = "popular"


class PlannedStore(abc.ABC):
    """Implements ``OnlineFeatureStore`` over two primitives: run write ops atomically, run read ops in one trip."""

    def __init__(self, key_prefix: str, user_ttl_s: int, popularity_half_life_s: float) -> None:
        self.keys = KeySchema(key_prefix)
        self.user_ttl_s = user_ttl_s
        self.popularity = DecaySpec(POPULAR, popularity_half_life_s)

    @abc.abstractmethod
    async def _execute(self, ops: Sequence[WriteOp]) -> None:
        """Apply ``ops`` in order, all or nothing, in one round trip."""

    @abc.abstractmethod
    async def _read(self, ops: Sequence[ReadOp]) -> list[ReadResult]:
        """Run ``ops`` in one round trip; results aligned with ``ops``."""

    @abc.abstractmethod
    async def _scan(self, prefix: str, cursor: str | None, count: int) -> tuple[str | None, list[str]]:
        """One page of the keys starting with ``prefix`` (returned without it), as ``scan_users`` documents."""

    def plan(self, batch: WriteBatch) -> list[WriteOp]:
        """The primitive ops of ``batch`` (offsets last, so they land with everything they cover)."""
        k = self.keys
        ops: list[WriteOp] = [
            SetOp(k.user(u), s if isinstance(s, bytes) else encode_state(s), self.user_ttl_s)
            for u, s in batch.users.items()
        ]
        ops += [SetOp(k.user_vector(u), encode_vector(v), self.user_ttl_s) for u, v in batch.user_vectors.items()]
        ops += [SetOp(k.item(i), encode_item(r)) for i, r in batch.items.items()]
        for item, counts in batch.item_counts.items():
            ops += [HIncrOp(k.item_counter(t), item, c) for t, c in zip(EVENT_TYPES, counts.counts, strict=True) if c]
        decayed = list(batch.decayed)
        if batch.popularity and batch.popularity_ref is not None:
            decayed.append(DecayedUpdate(self.popularity, batch.popularity_ref, batch.popularity))
        for upd in decayed:
            ops += self._decayed_ops(upd)
        for p in batch.pools:
            if p.upserts:
                ops.append(ZAddOp(k.pool(p.name), dict(p.upserts)))
            if p.removes:
                ops.append(ZRemOp(k.pool(p.name), list(p.removes)))
            if p.keep is not None:
                ops.append(ZTrimOp(k.pool(p.name), p.keep))
        if batch.covisit is not None:
            ops += self._covisit_ops(batch.covisit)
        if batch.offsets:
            ops.append(HMaxOp(k.offsets(batch.source), {str(p): o for p, o in batch.offsets.items()}))
        return ops

    def _decayed_ops(self, upd: DecayedUpdate) -> list[WriteOp]:
        hl = upd.spec.half_life_s
        ops: list[WriteOp] = []
        for gen, scale in generation_scales(upd.ref, hl):
            key = self.keys.decayed(upd.spec.name, gen)
            ops += [ZIncrOp(key, item, w * scale) for item, w in upd.increments.items() if w]
            ops.append(ExpireOp(key, _generation_ttl(hl)))
        return ops

    def _covisit_ops(self, upd: CovisitUpdate) -> list[WriteOp]:
        # Increments first, then trims, then expiries: runs of one kind become one scripted command each.
        hl = upd.half_life_s
        incr: list[WriteOp] = []
        tail: list[WriteOp] = []
        for gen, scale in generation_scales(upd.ref, hl):
            for item, others in upd.pairs.items():
                key = self.keys.covisit(gen, item)
                incr += [ZIncrOp(key, other, w * scale) for other, w in others.items() if w]
                tail.append(ZTrimOp(key, upd.top_k))
        expiries = [ExpireOp(op.key, _generation_ttl(hl)) for op in tail if isinstance(op, ZTrimOp)]
        return incr + tail + expiries

    async def write_batch(self, batch: WriteBatch) -> None:
        ops = self.plan(batch)
        if ops:
            await self._execute(ops)

    async def applied_offsets(self, source: str) -> dict[int, int]:
        (raw,) = await self._read([HGetAll(self.keys.offsets(source))])
        return {int(p): int(o) for p, o in cast(dict[str, str], raw).items()}

    async def read_user(self, user_id: str) -> UserState | None:
        (vals,) = await self._read([GetMany([self.keys.user(user_id)])])
        raw = cast(list[bytes | None], vals)[0]
        return None if raw is None else decode_state(raw)

    async def read_user_vector(self, user_id: str) -> npt.NDArray[np.float32] | None:
        (vals,) = await self._read([GetMany([self.keys.user_vector(user_id)])])
        raw = cast(list[bytes | None], vals)[0]
        return None if raw is None else decode_vector(raw)

    async def scan_users(self, cursor: str | None, count: int) -> tuple[str | None, list[str]]:
        if count < 1:
            raise ValueError(f"scan count must be >= 1, got {count}")
        return await self._scan(self.keys.user_prefix, cursor, count)

    async def read_users(self, user_ids: Sequence[str]) -> list[UserState | None]:
        if not user_ids:
            return []
        (vals,) = await self._read([GetMany([self.keys.user(u) for u in user_ids])])
        return [None if raw is None else decode_state(raw) for raw in cast(list[bytes | None], vals)]

    async def read_user_vectors(self, user_ids: Sequence[str]) -> list[npt.NDArray[np.float32] | None]:
        if not user_ids:
            return []
        (vals,) = await self._read([GetMany([self.keys.user_vector(u) for u in user_ids])])
        return [None if raw is None else decode_vector(raw) for raw in cast(list[bytes | None], vals)]

    async def write_precomputed(self, lists: Sequence[PrecomputedList], ttl_s: int) -> None:
        if ttl_s < 1:
            raise ValueError(f"precomputed lists need a TTL >= 1 s, got {ttl_s}")
        ops: list[WriteOp] = [SetOp(self.keys.precomputed(r.user_id), encode_precomputed(r), ttl_s) for r in lists]
        if ops:
            await self._execute(ops)

    async def read_precomputed(self, user_id: str) -> PrecomputedList | None:
        (vals,) = await self._read([GetMany([self.keys.precomputed(user_id)])])
        raw = cast(list[bytes | None], vals)[0]
        return None if raw is None else decode_precomputed(raw)

    async def read_items(self, item_ids: Sequence[str]) -> list[ItemRecord | None]:
        if not item_ids:
            return []
        ids = list(item_ids)
        reads: list[ReadOp] = [GetMany([self.keys.item(i) for i in ids])]
        reads += [HGetMany(self.keys.item_counter(t), ids) for t in EVENT_TYPES]
        raw, *counters = await self._read(reads)
        out: list[ItemRecord | None] = []
        for j, rec in enumerate(cast(list[bytes | None], raw)):
            if rec is None:
                out.append(None)
                continue
            counts = tuple(int(cast(list[int | None], c)[j] or 0) for c in counters)
            out.append(decode_item(rec, ItemCounts(counts)))
        return out

    async def read_item_columns(self, item_ids: Sequence[str]) -> ItemColumns:
        ids = list(item_ids)
        return ItemColumns.from_records(ids, await self.read_items(ids))

    async def top_popular(self, n: int, now: float) -> Scored:
        return await self.read_decayed(self.popularity, n, now)

    async def read_decayed(self, spec: DecaySpec, n: int, now: float) -> Scored:
        if n <= 0:
            return []
        gen = generation(now, spec.half_life_s)
        (top,) = await self._read([ZTop(self.keys.decayed(spec.name, gen), n)])
        return _scaled(cast(Scored, top), score_now(1.0, gen, now, spec.half_life_s))

    async def read_pool(self, name: str, n: int) -> Scored:
        if n <= 0:
            return []
        (top,) = await self._read([ZTop(self.keys.pool(name), n)])
        return list(cast(Scored, top))

    async def read_pool_since(self, name: str, since: float, n: int) -> list[str]:
        if n <= 0:
            return []
        (members,) = await self._read([ZAbove(self.keys.pool(name), since, n)])
        return list(cast(list[str], members))

    async def read_covisit(self, item_ids: Sequence[str], n: int, now: float, half_life_s: float) -> list[Scored]:
        if not item_ids or n <= 0:
            return [[] for _ in item_ids]
        gen = generation(now, half_life_s)
        tops = await self._read([ZTop(self.keys.covisit(gen, i), n) for i in item_ids])
        weight = score_now(1.0, gen, now, half_life_s)  # one generation: every stored score scales alike
        return [_scaled(cast(Scored, t), weight) for t in tops]


def _scaled(pairs: Scored, weight: float) -> Scored:
    """``pairs`` with each score times ``weight`` (a generation's decay to now, as ``score_now`` applies it)."""
    return [(m, s * weight) for m, s in pairs]


def _generation_ttl(half_life_s: float) -> int:
    # A generation is written for two periods (as "next", then as "current"); idle ones go after that.
    return math.ceil(2 * period_s(half_life_s) + half_life_s)
