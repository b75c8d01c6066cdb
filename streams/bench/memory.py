"""Redis memory per active user, from ``INFO memory`` over a population of simulated users.

The simulator's sessions are long (about 28 events per active user), so streaming 100,000 distinct
users through a worker would take millions of events.  Instead the users the worker did stream are the
templates: every other simulated user id (``u0`` .. ``u{n-1}``) receives a copy of a streamed user's
state (renamed) and session vector, written through the same ``write_batch`` the worker uses (same
encoding, same TTLs).  The per-user figure is the drop in ``used_memory`` when all user keys are
deleted, divided by the number of users: key, value, dict and expiry overhead included.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, cast

import redis

from state.redis_store import RedisFeatureStore
from state.state_codec import decode_state
from state.store import WriteBatch
from state.vectors import decode_vector
from streams.bench.harness import private_redis

_CHUNK = 1000


async def used_memory(store: RedisFeatureStore) -> int:
    """``used_memory`` of ``INFO memory`` (bytes the allocator holds for the data set)."""
    info: dict[str, Any] = await store.client.info("memory")
    return int(info["used_memory"])


async def _read_templates(store: RedisFeatureStore, users: Sequence[str]) -> list[tuple[bytes, bytes | None]]:
    out: list[tuple[bytes, bytes | None]] = []
    for i in range(0, len(users), _CHUNK):
        chunk = users[i : i + _CHUNK]
        states = cast(list[bytes | None], await store.client.mget([store.keys.user(u) for u in chunk]))
        vectors = cast(list[bytes | None], await store.client.mget([store.keys.user_vector(u) for u in chunk]))
        out += [(s, v) for s, v in zip(states, vectors, strict=True) if s is not None]
    return out


async def populate(store: RedisFeatureStore, streamed: Sequence[str], n_users: int) -> list[str]:
    """Give every simulated user ``u0..u{n_users-1}`` that was not streamed a streamed user's state.

    Returns the ids written (the clones).  Templates are taken round-robin, so the population has the
    state-size distribution of the users the worker actually streamed.
    """
    templates = await _read_templates(store, sorted(streamed))
    if not templates:
        raise RuntimeError("no streamed user state in Redis to populate from")
    have = set(streamed)
    clones = [f"u{i}" for i in range(n_users) if f"u{i}" not in have]
    for start in range(0, len(clones), _CHUNK):
        users, vectors = {}, {}
        for j, uid in enumerate(clones[start : start + _CHUNK], start):
            raw, vec = templates[j % len(templates)]
            state = decode_state(raw)
            state.user_id = uid
            users[uid] = state
            if vec is not None:
                vectors[uid] = decode_vector(vec)
        await store.write_batch(WriteBatch(source="bench-population", users=users, user_vectors=vectors))
    return clones


async def _memory_usage(store: RedisFeatureStore, users: Sequence[str]) -> float:
    """Mean ``MEMORY USAGE`` of the users' two keys, asked in chunks (one huge pipeline outlasts the timeout)."""
    total = 0.0
    for i in range(0, len(users), _CHUNK):
        chunk = users[i : i + _CHUNK]
        total += await store.bytes_per_user(chunk) * len(chunk)
    return total / max(len(users), 1)


async def user_key_bytes(store: RedisFeatureStore, users: Sequence[str]) -> tuple[float, int]:
    """Mean bytes per user that deleting every user's state and vector key frees, and the bytes before."""
    before = await used_memory(store)
    for i in range(0, len(users), _CHUNK):
        chunk = users[i : i + _CHUNK]
        await store.client.delete(*[k for u in chunk for k in (store.keys.user(u), store.keys.user_vector(u))])
    freed = before - await used_memory(store)
    return freed / max(len(users), 1), before


async def memory_report(
    store: RedisFeatureStore, streamed: Sequence[str], n_users: int, baseline: int
) -> dict[str, Any]:
    """Populate to ``n_users`` simulated users, then measure; ``baseline`` is ``used_memory`` before the run."""
    clones = await populate(store, streamed, n_users)
    everyone = [*streamed, *clones]
    mean_usage = await _memory_usage(store, everyone)
    per_user, full = await user_key_bytes(store, everyone)
    return {
        "redis_bytes_per_user": round(per_user, 1),
        "redis_memory": {
            "method": "INFO used_memory freed by deleting every user's state and vector keys, per user",
            "users": len(everyone),
            "streamed_users": len(streamed),
            "cloned_users": len(clones),
            "used_memory_before_run": baseline,
            "used_memory_with_users": full,
            "all_keys_bytes_per_user": round((full - baseline) / max(len(everyone), 1), 1),
            "memory_usage_bytes_per_user": round(mean_usage, 1),
        },
    }


def free_port() -> int:
    """A TCP port nothing listens on right now (for a private Redis; fixed ports collide between benches)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def private_redis_url(workdir: Path, timeout_s: float = 10.0) -> Iterator[str]:
    """Start a throwaway ``redis-server`` on a free port; yield its URL once it answers PING; kill it on exit."""
    port = free_port()
    proc = private_redis(port, workdir)
    try:
        client = redis.Redis(host="127.0.0.1", port=port, socket_timeout=1.0)
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                if client.ping():
                    break
            except redis.RedisError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"private redis-server on port {port} did not start") from None
                time.sleep(0.05)
        client.close()
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        proc.kill()
        proc.wait()
