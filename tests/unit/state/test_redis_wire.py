"""The fast RESP packer writes exactly the bytes redis-py would, and refuses what redis-py refuses."""

from __future__ import annotations

import random

import pytest
import redis.asyncio as aioredis
from redis.exceptions import DataError

from state.redis_wire import LONG_COMMAND, FastPackConnection, pack


def _reference(*args: object) -> bytes:
    return b"".join(aioredis.Connection().pack_command(*args))


def _random_args(rng: random.Random, n: int) -> list[object]:
    pool: list[object] = []
    for _ in range(n):
        kind = rng.randrange(5)
        if kind == 0:
            pool.append(rng.randbytes(rng.randrange(0, 40)))
        elif kind == 1:
            pool.append("".join(rng.choice("abcé:-_日") for _ in range(rng.randrange(0, 20))))
        elif kind == 2:
            pool.append(rng.randrange(-(10**12), 10**12))
        elif kind == 3:
            pool.append(rng.uniform(-1e6, 1e6) * 10 ** rng.randrange(-20, 20))
        else:
            pool.append(rng.random())
    return pool


@pytest.mark.parametrize("seed", range(20))
def test_pack_matches_redis_py_byte_for_byte(seed: int) -> None:
    rng = random.Random(seed)
    args = ["EVAL", "return 1", 3, *_random_args(rng, rng.randrange(0, 300))]
    assert pack(args) == _reference(*args)


def test_connection_uses_the_fast_path_for_long_commands_only() -> None:
    conn = FastPackConnection()
    long_args = ["EVAL", "return #KEYS", LONG_COMMAND, *[f"k{i}" for i in range(LONG_COMMAND)]]
    assert conn.pack_command(*long_args) == [pack(long_args)]
    assert b"".join(conn.pack_command("SET", "k", 1)) == _reference("SET", "k", 1)
    assert b"".join(conn.pack_command("CONFIG GET", *range(40))) == _reference("CONFIG GET", *range(40))


@pytest.mark.parametrize("bad", [True, None, object(), [1]])
def test_pack_refuses_what_redis_py_refuses(bad: object) -> None:
    with pytest.raises(DataError):
        pack(["EVAL", "return 1", bad])
    with pytest.raises(DataError):
        _reference("EVAL", "return 1", bad)
