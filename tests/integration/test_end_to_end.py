"""The whole loop over the real broker and Redis: events in, dead letters out, every request answered."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime, timedelta

import orjson
import pytest

from state.redis_store import RedisFeatureStore
from streams.bench.harness import WorkerProcess
from streams.client import RecClient
from streams.produce import produce_lines
from streams.records import DeadLetter, ErrorCode, RecommendRequest
from streams.settings import Settings
from streams.topics import topic_names
from tests.integration.conftest import read_topic

NOW = datetime.now(UTC)
SERVING = {"epsilon": 0.0}  # exact lists: no exploration slots


def event(i: int, user: str, item: str, kind: str = "view", age_s: float = 60.0) -> bytes:
    ts = (NOW - timedelta(seconds=age_s)).isoformat()
    return orjson.dumps({"event_id": f"{user}-{i}", "type": kind, "user_id": user, "item_id": item, "ts": ts})


def produce(settings: Settings, topic: str, lines: list[bytes]) -> None:
    asyncio.run(produce_lines(settings.kafka.bootstrap_servers, topic, lines))


async def wait_for_offsets(settings: Settings, total: int, timeout_s: float = 30.0) -> None:
    """Until the worker has handled ``total`` event messages (its watermark in Redis says so)."""
    store = RedisFeatureStore(settings.redis)
    try:
        end = time.monotonic() + timeout_s
        while time.monotonic() < end:
            applied = await store.applied_offsets(topic_names(settings.kafka).events)
            if sum(o + 1 for o in applied.values()) >= total:
                return
            await asyncio.sleep(0.1)
        raise AssertionError(f"worker handled {applied} of {total} events")
    finally:
        await store.close()


@pytest.fixture(scope="module")
def loaded(running_worker: tuple[Settings, WorkerProcess]) -> Settings:
    settings, _ = running_worker
    names = topic_names(settings.kafka)
    # item popularity: i1 > i2 > i3 > i4 > i5 (by number of views across users)
    lines = [
        event(n, f"crowd{n}", f"i{item}")
        for item in range(1, 6)
        for n in range(item * 100, item * 100 + 6 * (6 - item))
    ]
    lines += [event(1, "alice", "i1", "click"), event(2, "alice", "i2", "purchase")]
    bad = [
        b"not json at all",
        orjson.dumps({"event_id": "x1", "type": "teleport", "user_id": "bob", "item_id": "i1", "ts": NOW.isoformat()}),
        event(3, "mallory", "i9", age_s=-86_400),
    ]
    produce(settings, names.events, lines + bad)
    asyncio.run(wait_for_offsets(settings, len(lines) + len(bad)))
    return settings


async def _ask(settings: Settings, user: str, k: int, exclude: tuple[str, ...]) -> list[str]:
    async with RecClient(settings) as client:
        resp = await client.recommend(user, k, exclude=exclude)
    assert resp.error is None and resp.correlation_id
    return [it.item_id for it in resp.items]


def answers(settings: Settings, user: str, expected: list[str], k: int = 3, exclude: tuple[str, ...] = ()) -> bool:
    """True once the answer equals ``expected`` (the popular list refreshes every second)."""
    got: list[str] = []
    for _ in range(30):
        got = asyncio.run(_ask(settings, user, k, exclude))
        if got == expected:
            return True
        time.sleep(0.25)
    raise AssertionError(f"{user} got {got}, expected {expected}")


def test_known_user_gets_popular_items_minus_what_they_touched(loaded: Settings) -> None:
    assert answers(loaded, "alice", ["i3", "i4", "i5"])


def test_unknown_user_gets_popular_items_and_exclude_is_honoured(loaded: Settings) -> None:
    assert answers(loaded, "nobody-yet", ["i1", "i2", "i3"])
    assert answers(loaded, "nobody-yet", ["i2", "i3", "i4"], exclude=("i1",))


def test_fresh_events_change_the_next_answer(loaded: Settings) -> None:
    names = topic_names(loaded.kafka)
    before = sum(o + 1 for o in asyncio.run(_offsets(loaded)).values())
    produce(loaded, names.events, [event(9, "alice", "i3", "click", age_s=1)])
    asyncio.run(wait_for_offsets(loaded, before + 1))
    assert answers(loaded, "alice", ["i4", "i5"])


async def _offsets(settings: Settings) -> dict[int, int]:
    store = RedisFeatureStore(settings.redis)
    try:
        return await store.applied_offsets(topic_names(settings.kafka).events)
    finally:
        await store.close()


def test_malformed_events_go_to_dead_letters_with_reason_and_origin(loaded: Settings) -> None:
    names = topic_names(loaded.kafka)
    records = [DeadLetter.model_validate_json(v) for _, v in asyncio.run(read_topic(loaded, names.dead_letters, 3))]
    assert sorted(r.reason for r in records) == ["future_timestamp", "not_json", "unknown_type"]
    assert all(r.topic == names.events and r.offset >= 0 and r.partition >= 0 for r in records)
    assert any("not json" in r.payload for r in records)


async def _raw_request(settings: Settings, payload: dict[str, object]) -> object:
    async with RecClient(settings) as client:
        req = RecommendRequest.model_validate(payload)
        return await client.send(req)


def test_bad_requests_get_typed_errors(loaded: Settings) -> None:
    resp = asyncio.run(_raw_request(loaded, {"correlation_id": "big-k", "user_id": "alice", "k": 5000}))
    assert resp.error is not None and resp.error.code is ErrorCode.K_OUT_OF_RANGE  # type: ignore[attr-defined]
    assert resp.items == []  # type: ignore[attr-defined]


def test_request_without_correlation_id_is_dead_lettered_and_worker_keeps_answering(loaded: Settings) -> None:
    names = topic_names(loaded.kafka)
    produce(loaded, names.rec_requests, [orjson.dumps({"user_id": "alice", "k": 2})])
    letters = [DeadLetter.model_validate_json(v) for _, v in asyncio.run(read_topic(loaded, names.dead_letters, 4))]
    assert any(r.topic == names.rec_requests and "correlation_id" in r.detail for r in letters)
    assert answers(loaded, "nobody-yet", ["i1"], k=1)
