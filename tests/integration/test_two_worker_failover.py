"""Two workers share the co-partitioned topics; one is SIGKILLed mid-stream and the other takes over.

The survivor gets the dead worker's partitions of events and requests, restores their user table from
the changelog, resumes from the committed offsets, and ends with exactly the per-user state and item
counters of an uninterrupted single pass over the same events; the dead worker's users are answered.
"""

from __future__ import annotations

import asyncio
import re
import time
from pathlib import Path

import orjson
import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.coordinator.protocol import ConsumerProtocolMemberAssignment
from aiokafka.partitioner import DefaultPartitioner

from agents.runtime import build_store
from state.features import decode_state
from streams.bench.harness import WorkerProcess, simulated_lines, user_ids
from streams.bench.ingest import produce_paced, wait_handled
from streams.client import RecClient
from streams.settings import Settings
from streams.topics import topic_names
from tests.integration.conftest import LOGS, drop_topics, fresh_settings
from tests.integration.test_crash_recovery import offline, online

Assignment = dict[str, dict[str, frozenset[int]]]  # member id -> topic -> partitions


@pytest.fixture
def settings(base_settings: Settings) -> Settings:
    s = fresh_settings(base_settings, "failover", batch_size=500, commit_interval_s=2.0)
    yield s
    drop_topics(s)


async def assignment(settings: Settings) -> Assignment:
    """The consumer group's members and their partitions, as the broker's coordinator sees them."""
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka.bootstrap_servers)
    await admin.start()
    try:
        (response,) = await admin.describe_consumer_groups([settings.worker.app_id])
    finally:
        await admin.close()
    out: Assignment = {}
    for group in response.groups:
        members = group[5] if len(group) > 5 else []
        for member in members:
            member_id, raw = member[0], member[-1]
            if not raw:
                continue
            decoded = ConsumerProtocolMemberAssignment.decode(raw)
            out[member_id] = {topic: frozenset(parts) for topic, parts in decoded.assignment}
    return out


async def wait_assignment(settings: Settings, members: int, timeout_s: float = 90.0) -> Assignment:
    """Wait until ``members`` members share every events partition (a finished rebalance)."""
    events = topic_names(settings.kafka).events
    end = time.monotonic() + timeout_s
    while time.monotonic() < end:
        got = await assignment(settings)
        owned = [m.get(events, frozenset()) for m in got.values()]
        if (
            len(got) == members
            and all(owned)
            and sorted(p for s in owned for p in s) == list(range(settings.kafka.partitions))
        ):
            return got
        await asyncio.sleep(0.5)
    raise AssertionError(f"no stable {members}-member assignment within {timeout_s} s: {await assignment(settings)}")


async def changelog(settings: Settings) -> dict[str, bytes]:
    """The last value per key of the users table's changelog: what any worker restoring it would hold."""
    topic = f"{settings.worker.app_id}-users-changelog"
    consumer = AIOKafkaConsumer(bootstrap_servers=settings.kafka.bootstrap_servers, enable_auto_commit=False)
    await consumer.start()
    try:
        tps = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or ())]
        if not tps:
            tps = [TopicPartition(topic, p) for p in range(settings.kafka.partitions)]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        ends = await consumer.end_offsets(tps)
        out: dict[str, bytes] = {}
        while [tp for tp in tps if await consumer.position(tp) < ends[tp]]:
            for recs in (await consumer.getmany(timeout_ms=500)).values():
                out.update({r.key.decode(): r.value for r in recs if r.key is not None and r.value is not None})
        return out
    finally:
        await consumer.stop()


def logged_partitions(log: Path) -> frozenset[int] | None:
    """The request partitions a worker's log last said it answers (None before it said any)."""
    lines = [ln for ln in log.read_text(errors="replace").splitlines() if "answering requests of partitions" in ln]
    if not lines:
        return None
    return frozenset(int(p) for p in re.findall(r"\d+", lines[-1].rpartition("partitions")[2]))


async def answered_partitions(log: Path, want: frozenset[int], timeout_s: float = 30.0) -> frozenset[int] | None:
    """:func:`logged_partitions`, once they are ``want`` or at the timeout."""
    end = time.monotonic() + timeout_s
    got = logged_partitions(log)
    while got != want and time.monotonic() < end:
        await asyncio.sleep(0.5)
        got = logged_partitions(log)
    return got


def partition_of_user(user: str, partitions: int) -> int:
    """Where the producer's default partitioner puts a message keyed by ``user`` (murmur2, as Java's)."""
    parts = list(range(partitions))
    return int(DefaultPartitioner()(user.encode(), parts, parts))


async def failover(settings: Settings, lines: list[bytes], catalog: list[bytes]) -> tuple[frozenset[int], list[str]]:
    names = topic_names(settings.kafka)
    servers = settings.kafka.bootstrap_servers
    await produce_paced(servers, names.items, catalog, None)
    store = build_store(settings)
    second = settings.model_copy(
        update={"worker": settings.worker.model_copy(update={"data_dir": settings.worker.data_dir / "b"})}
    )
    second.worker.data_dir.mkdir(parents=True, exist_ok=True)  # Faust creates only the last level
    a = WorkerProcess(settings, LOGS / f"{settings.worker.app_id}-a.log").start()
    b: WorkerProcess | None = None
    try:
        await wait_handled(store, names.items, len(catalog), a, timeout_s=120)
        (a_member,) = await wait_assignment(settings, 1)  # alone, a has every partition
        b = WorkerProcess(second, LOGS / f"{settings.worker.app_id}-b.log").start()
        shared = await wait_assignment(settings, 2)
        a_parts = shared[a_member][names.events]
        b_parts = next(m[names.events] for member, m in shared.items() if member != a_member)
        # co-partitioned: a user's requests are answered where the user's events (and table state) are
        assert await answered_partitions(a.log_path, a_parts) == a_parts
        assert await answered_partitions(b.log_path, b_parts) == b_parts
        assert 0 < len(a_parts) < settings.kafka.partitions
        await produce_paced(servers, names.events, lines[: len(lines) // 2], None)
        await wait_handled(store, names.events, len(lines) // 4, b, timeout_s=120)
        a.kill()  # SIGKILL mid-stream: no flush, no commit, no leave-group
        await produce_paced(servers, names.events, lines[len(lines) // 2 :], None)
        await wait_handled(store, names.events, len(lines), b, timeout_s=180)
        (survivor,) = (await wait_assignment(settings, 1)).values()
        assert survivor[names.events] == frozenset(range(settings.kafka.partitions))
        assert await answered_partitions(b.log_path, survivor[names.events]) == survivor[names.events]
        orphans = [u for u in user_ids(lines) if partition_of_user(u, settings.kafka.partitions) in a_parts]
        answered = await ask(settings, orphans[:12])
        return a_parts, answered
    finally:
        a.kill()
        if b is not None:
            b.stop()
        await store.close()


async def ask(settings: Settings, users: list[str]) -> list[str]:
    """Recommend for ``users``; returns those whose answer excludes everything they recently interacted with."""
    store = build_store(settings)
    ok: list[str] = []
    try:
        async with RecClient(settings) as client:
            for user in users:
                response = await client.recommend(user, 5, deadline_ms=3000)
                state = await store.read_user(user)
                seen = {item for _, _, item in state.last_n} if state is not None else set()
                if response.items and not seen & {it.item_id for it in response.items}:
                    ok.append(user)
    finally:
        await store.close()
    return ok


def test_the_survivor_takes_over_and_ends_like_one_uninterrupted_worker(settings: Settings) -> None:
    lines, catalog = simulated_lines(16_000, seed=7, n_users=300, n_items=200, start=time.time() - 3600)
    a_parts, answered = asyncio.run(failover(settings, lines, catalog))
    want_states, want_counts = offline(lines, catalog, settings)
    got_states, got_counts = asyncio.run(online(settings, sorted(want_states), sorted(want_counts)))
    item_ids = {orjson.loads(c)["item_id"] for c in catalog}
    assert len(want_states) > 200 and sum(sum(c) for c in want_counts.values()) == len(lines)
    differ = sorted(u for u in want_states if got_states.get(u) != want_states[u])
    where = {u: (partition_of_user(u, settings.kafka.partitions), sorted(a_parts)) for u in differ}
    assert not differ, f"users whose state differs -> (their partition, the dead worker's partitions): {where}"
    assert got_counts == {i: c for i, c in want_counts.items() if i in item_ids}
    restored = asyncio.run(changelog(settings))
    assert {u: restored.get(u) for u in want_states} == want_states
    orphans = [u for u in want_states if partition_of_user(u, settings.kafka.partitions) in a_parts]
    assert len(orphans) > 50 and len(answered) == 12  # answered after takeover, with their table state
    assert all(decode_state(want_states[u]).total > 0 for u in answered)
