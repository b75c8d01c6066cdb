"""Redis online store (redis.asyncio): every write batch is one MULTI/EXEC pipeline, every read one pipeline."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, TypeVar

import hiredis
import numpy as np
import numpy.typing as npt
import redis.asyncio as aioredis
from redis import exceptions as rexc

from state.errors import StoreError, StoreUnavailable
from state.item_columns import ItemColumns
from state.items import ItemCounts, ItemRecord, decode_item
from state.redis_wire import FastPackConnection
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
    ZTop,
    ZTrimOp,
)
from streams.records import EVENT_TYPES
from streams.settings import RedisSettings

T = TypeVar("T")
BREAKER_OPEN_S = 0.5

# Raise each partition's offset only forward.  Sent with EVAL (not EVALSHA) so that a flushed script
# cache can never make one command of the transaction fail while the others apply.
_HMAX = """
for i = 1, #ARGV, 2 do
  local cur = redis.call('HGET', KEYS[1], ARGV[i])
  if (not cur) or tonumber(cur) < tonumber(ARGV[i + 1]) then
    redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 1])
  end
end
return 0
"""


class RedisFeatureStore(PlannedStore):
    """The production store; the key schema is documented in ``state.keys``.

    The client is created here but connects on first use; :meth:`close` releases the pool.
    """

    def __init__(
        self,
        settings: RedisSettings,
        *,
        popularity_half_life_s: float = 6 * 3600.0,
        client: aioredis.Redis | None = None,
    ) -> None:
        super().__init__(settings.key_prefix, settings.user_ttl_s, popularity_half_life_s)
        self._open_until = 0.0
        self.url = settings.url
        password = settings.password.get_secret_value() if settings.password else None
        fast: dict[str, Any] = {"connection_class": FastPackConnection} if settings.url.startswith("redis://") else {}
        self._redis = client or aioredis.Redis.from_url(
            settings.url,
            password=password,
            socket_timeout=settings.socket_timeout_s,
            socket_connect_timeout=settings.socket_timeout_s,
            decode_responses=False,
            # RESP2: redis-py 8 parses RESP3 scores as doubles, then re-encodes each to bytes and back to
            # float for its legacy reply shapes (~1.6 us a score, in Python); RESP2 scores are cast once.
            protocol=2,
            **fast,
        )

    @property
    def client(self) -> aioredis.Redis:
        """The underlying client (for measurements and tests)."""
        return self._redis

    async def _guard(self, what: str, call: Callable[[], Awaitable[T]]) -> T:
        # Circuit breaker: right after Redis was found unreachable, fail at once for ``BREAKER_OPEN_S``
        # instead of letting every request wait out a connect attempt; one call then probes again.
        now = time.monotonic()
        if now < self._open_until:
            raise StoreUnavailable(f"redis at {self.url} unavailable during {what} (breaker open)")
        try:
            return await call()
        except (rexc.ConnectionError, rexc.TimeoutError) as exc:
            self._open_until = time.monotonic() + BREAKER_OPEN_S
            raise StoreUnavailable(f"redis at {self.url} unavailable during {what}: {exc}") from exc
        except rexc.RedisError as exc:
            raise StoreError(f"redis refused {what}: {exc}") from exc

    async def _execute(self, ops: Sequence[WriteOp]) -> None:
        pipe = self._redis.pipeline(transaction=True)
        for run in _runs(ops):
            _queue_run(pipe, run)
        await self._guard(f"a write of {len(ops)} ops", pipe.execute)

    async def _read(self, ops: Sequence[ReadOp]) -> list[ReadResult]:
        pipe = self._redis.pipeline(transaction=False)
        for op in ops:
            if isinstance(op, GetMany):
                pipe.mget(list(op.keys))
            elif isinstance(op, HGetMany):
                pipe.hmget(op.key, list(op.fields))
            elif isinstance(op, HGetAll):
                pipe.hgetall(op.key)
            elif isinstance(op, ZAbove):  # "(x": exclusive; repr round-trips the float exactly
                pipe.zrevrangebyscore(op.key, "+inf", f"({op.above!r}", start=0, num=op.n)
            else:
                pipe.zrevrange(op.key, 0, op.n - 1, withscores=True)
        raw: list[Any] = await self._guard(f"a read of {len(ops)} ops", pipe.execute)
        return [_convert(op, r) for op, r in zip(ops, raw, strict=True)]

    async def _scan(self, prefix: str, cursor: str | None, count: int) -> tuple[str | None, list[str]]:
        start = int(cursor) if cursor is not None else 0
        nxt, keys = await self._guard(
            "SCAN", lambda: self._redis.scan(cursor=start, match=glob_escape(prefix) + "*", count=count)
        )
        n = len(prefix)
        names = [k.decode() if isinstance(k, bytes) else str(k) for k in keys]
        return (None if int(nxt) == 0 else str(int(nxt))), [k[n:] for k in names]
    async def read_items(self, item_ids: Sequence[str]) -> list[ItemRecord | None]:
        ids = list(item_ids)
        got = await self._batched_items(ids)
        return await super().read_items(ids) if got is None else decode_items(got[0], got[1], len(ids))

    async def read_item_columns(self, item_ids: Sequence[str]) -> ItemColumns:
        ids = list(item_ids)
        got = await self._batched_items(ids)
        if got is None:
            return await super().read_item_columns(ids)
        return ItemColumns.from_wire(ids, got[0], parse_counters(got[1], len(ids)).T)

    async def _batched_items(self, ids: list[str]) -> tuple[list[bytes | None], list[bytes]] | None:
        """Records and counters of up to thousands of items in one round trip: MGET and one HMGET per type.

        redis-py packs every argument in Python (about a microsecond each), so a thousand candidates'
        six thousand arguments cost more client time than the rest of a request; hiredis packs them in C
        and the six commands go out as one write on one pooled connection. (A Lua script taking the ids as
        one argument packs nothing, but costs Redis about 3 ms per thousand items.) Counters come back as
        one comma-joined string per event type. None when there is nothing to read.
        """
        if not ids:
            return None
        root = self.keys.item("")
        # hiredis' stub types the command as a 1-tuple; any length is what it takes
        commands = [hiredis.pack_command(("MGET", *[root + i for i in ids]))]  # type: ignore[arg-type]
        commands += [
            hiredis.pack_command(("HMGET", self.keys.item_counter(t), *ids))  # type: ignore[arg-type]
            for t in EVENT_TYPES
        ]
        raw = await self._guard(f"a read of {len(ids)} items", lambda: self._round_trip(b"".join(commands), 6))
        counters = [b",".join([v if v is not None else b"0" for v in r]) for r in raw[1:]]
        return list(raw[0]), counters

    async def _round_trip(self, packed: bytes, n_replies: int) -> list[Any]:
        pool = self._redis.connection_pool
        conn = await pool.get_connection()  # type: ignore[no-untyped-call]
        try:
            await conn.send_packed_command(packed)
            return [await conn.read_response() for _ in range(n_replies)]
        except BaseException:
            await conn.disconnect()  # replies may be pending on it: never hand it back half read
            raise
        finally:
            await pool.release(conn)

    async def bytes_per_user(self, user_ids: Sequence[str]) -> float:
        """Mean Redis memory (``MEMORY USAGE``: value, key and overhead) of the users' state and vector keys."""
        if not user_ids:
            return 0.0
        pipe = self._redis.pipeline(transaction=False)
        for u in user_ids:
            pipe.memory_usage(self.keys.user(u), samples=0)
            pipe.memory_usage(self.keys.user_vector(u), samples=0)
        sizes: list[int | None] = await self._guard("MEMORY USAGE", pipe.execute)
        return sum(s or 0 for s in sizes) / len(user_ids)

    async def ping(self) -> bool:
        try:
            return bool(await self._redis.ping())
        except (rexc.RedisError, OSError):
            return False

    async def close(self) -> None:
        await self._redis.aclose()


def parse_counters(counters: Sequence[bytes], n: int) -> npt.NDArray[np.int64]:
    """``[types, n]`` counts from one comma-joined string per event type, one vectorised parse each.

    >>> parse_counters([b"3,0", b"1,0"], 2).tolist()
    [[3, 0], [1, 0]]
    """
    if n == 0:
        return np.zeros((len(counters), 0), np.int64)
    return np.vstack([np.fromstring(c, dtype=np.int64, sep=",") for c in counters]).reshape(len(counters), n)


def decode_items(records: Sequence[bytes | None], counters: Sequence[bytes], n: int) -> list[ItemRecord | None]:
    """Records from MGET values and comma-joined counters (:meth:`RedisFeatureStore._batched_items`).

    >>> from state.items import encode_item
    >>> rec = encode_item(ItemRecord("a", "c", price=2.0))
    >>> out = decode_items([rec, None], [b"3,0", b"1,0", b"0,0", b"0,0", b"9,0"], 2)
    >>> out[0].counts.counts, out[1]
    ((3, 1, 0, 0, 9), None)
    """
    counts = parse_counters(counters, n).T.tolist()
    return [None if r is None else decode_item(r, ItemCounts(tuple(counts[j]))) for j, r in enumerate(records)]


# Runs of SET / ZINCRBY / HINCRBY become one scripted command each: packing thousands of separate
# commands costs redis-py far more client CPU than one command with many arguments.
_SET_MANY = """
for i = 1, #KEYS do
  local ttl = tonumber(ARGV[2 * i])
  if ttl > 0 then redis.call('SET', KEYS[i], ARGV[2 * i - 1], 'EX', ttl)
  else redis.call('SET', KEYS[i], ARGV[2 * i - 1]) end
end
return #KEYS
"""
_ZINCR_MANY = """
for i = 1, #KEYS do redis.call('ZINCRBY', KEYS[i], ARGV[2 * i], ARGV[2 * i - 1]) end
return #KEYS
"""
_HINCR_MANY = """
for i = 1, #KEYS do redis.call('HINCRBY', KEYS[i], ARGV[2 * i - 1], ARGV[2 * i]) end
return #KEYS
"""
_ZTRIM_MANY = """
local keep = tonumber(ARGV[1])
for i = 1, #KEYS do redis.call('ZREMRANGEBYRANK', KEYS[i], 0, -(keep + 1)) end
return #KEYS
"""
_EXPIRE_MANY = """
for i = 1, #KEYS do redis.call('EXPIRE', KEYS[i], ARGV[i]) end
return #KEYS
"""
_RUN_MAX = 4096
_MERGEABLE = (SetOp, ZIncrOp, HIncrOp, ZTrimOp, ExpireOp)


def glob_escape(text: str) -> str:
    r"""``text`` with Redis glob metacharacters escaped, for a literal prefix in ``SCAN MATCH``.

    >>> glob_escape("a*b[1]?")
    'a\\*b\\[1\\]\\?'
    """
    return "".join("\\" + c if c in "*?[]\\" else c for c in text)


def _runs(ops: Sequence[WriteOp]) -> list[list[WriteOp]]:
    """Consecutive ops of one mergeable kind grouped (order preserved exactly), others alone."""
    runs: list[list[WriteOp]] = []
    for op in ops:
        last = runs[-1] if runs else None
        if last is not None and isinstance(op, _MERGEABLE) and type(last[0]) is type(op) and len(last) < _RUN_MAX:
            last.append(op)
        else:
            runs.append([op])
    return runs


def _queue_run(pipe: Any, run: list[WriteOp]) -> None:
    if len(run) == 1:
        _queue_write(pipe, run[0])
        return
    keys = [op.key for op in run]
    args: list[Any] = []
    script = _SET_MANY
    for op in run:
        if isinstance(op, SetOp):
            args += [op.value, op.ttl_s or 0]
        elif isinstance(op, ZIncrOp):
            script = _ZINCR_MANY
            args += [op.member, repr(op.amount)]
        elif isinstance(op, HIncrOp):
            script = _HINCR_MANY
            args += [op.field, op.amount]
        elif isinstance(op, ExpireOp):
            script = _EXPIRE_MANY
            args.append(op.ttl_s)
    if isinstance(run[0], ZTrimOp):
        if len({op.keep for op in run if isinstance(op, ZTrimOp)}) == 1:
            pipe.eval(_ZTRIM_MANY, len(keys), *keys, run[0].keep)
            return
        for op in run:
            _queue_write(pipe, op)
        return
    pipe.eval(script, len(keys), *keys, *args)


def _queue_write(pipe: Any, op: WriteOp) -> None:
    if isinstance(op, SetOp):
        pipe.set(op.key, op.value, ex=op.ttl_s)
    elif isinstance(op, HIncrOp):
        pipe.hincrby(op.key, op.field, op.amount)
    elif isinstance(op, HMaxOp):
        args = [x for f, v in op.values.items() for x in (f, v)]
        pipe.eval(_HMAX, 1, op.key, *args)
    elif isinstance(op, ZIncrOp):
        pipe.zincrby(op.key, op.amount, op.member)
    elif isinstance(op, ZAddOp):
        pipe.zadd(op.key, dict(op.scores))
    elif isinstance(op, ZRemOp):
        pipe.zrem(op.key, *op.members)
    elif isinstance(op, ZTrimOp):
        pipe.zremrangebyrank(op.key, 0, -(op.keep + 1))
    elif isinstance(op, ExpireOp):
        pipe.expire(op.key, op.ttl_s)


def _convert(op: ReadOp, raw: Any) -> ReadResult:
    if isinstance(op, GetMany):
        return list(raw)
    if isinstance(op, HGetMany):
        return [None if v is None else int(v) for v in raw]
    if isinstance(op, HGetAll):
        return {k.decode(): v.decode() for k, v in raw.items()}
    if isinstance(op, ZAbove):
        return [m.decode() for m in raw]
    assert isinstance(op, ZTop)
    return [(m.decode(), float(s)) for m, s in raw]
