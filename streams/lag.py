"""Consumer-group lag from the broker: committed and end offsets, lag in messages and seconds, as Prometheus metrics.

Lag in seconds is the age of the oldest message a group has not consumed: ``now`` minus the timestamp of the
record at the committed offset (its CreateTime, or LogAppendTime where the topic sets it). It is 0 when the
group is caught up and unknown (``None``) when that record could not be read in time.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass
from types import TracebackType
from typing import Any, Self

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import KafkaError
from prometheus_client import CollectorRegistry
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from streams.errors import InfraError
from streams.settings import KafkaSettings

LABELS = ("group", "topic", "partition")


@dataclass(frozen=True, slots=True)
class PartitionLag:
    """One group's position on one partition. ``committed`` is ``None`` when the group never committed there."""

    group: str
    topic: str
    partition: int
    committed: int | None
    start: int
    end: int
    lag_messages: int
    lag_seconds: float | None


def partition_lag(
    group: str, tp: TopicPartition, committed: int | None, start: int, end: int, *, first_ts_ms: int | None, now: float
) -> PartitionLag:
    """Lag counted from where the group would resume: its commit, or the log start if that is later or absent.

    >>> partition_lag("g", TopicPartition("t", 0), 4, 0, 10, first_ts_ms=1_000_000, now=1_030.5).lag_seconds
    30.5
    >>> partition_lag("g", TopicPartition("t", 0), None, 3, 10, first_ts_ms=None, now=0.0).lag_messages
    7
    """
    lag = max(0, end - _position(committed, start))
    if lag == 0:
        seconds: float | None = 0.0
    else:
        seconds = None if first_ts_ms is None else max(0.0, now - first_ts_ms / 1000.0)
    return PartitionLag(group, tp.topic, tp.partition, committed, start, end, lag, seconds)


@dataclass(frozen=True, slots=True)
class LagSnapshot:
    """Every watched partition at one moment (``taken_at``, epoch seconds)."""

    taken_at: float
    rows: tuple[PartitionLag, ...]

    def as_dicts(self) -> list[dict[str, Any]]:
        return [asdict(r) for r in self.rows]


def breaches(
    rows: Iterable[PartitionLag], max_messages: int | None = None, max_seconds: float | None = None
) -> list[PartitionLag]:
    """Partitions over either threshold (an unknown lag in seconds does not breach).

    >>> row = PartitionLag("g", "t", 0, 5, 0, 10, 5, 12.0)
    >>> [len(breaches([row], 5, None)), len(breaches([row], 4, None)), len(breaches([row], None, 11.9))]
    [0, 1, 1]
    """

    def over(r: PartitionLag) -> bool:
        if max_messages is not None and r.lag_messages > max_messages:
            return True
        return max_seconds is not None and r.lag_seconds is not None and r.lag_seconds > max_seconds

    return [r for r in rows if over(r)]


class LagMonitor:
    """Reads consumer-group offsets through the admin API; never joins a group or commits.

    Use as ``async with LagMonitor(kafka) as mon: snap = await mon.snapshot(["app"])``.
    """

    def __init__(self, kafka: KafkaSettings, *, timeout_s: float = 5.0, clock: Callable[[], float] = time.time) -> None:
        self._kafka = kafka
        self._timeout_s = timeout_s
        self._clock = clock
        self._admin: AIOKafkaAdminClient | None = None
        self._consumer: AIOKafkaConsumer | None = None

    async def start(self) -> None:
        servers = self._kafka.bootstrap_servers
        self._admin = AIOKafkaAdminClient(bootstrap_servers=servers, client_id=f"{self._kafka.client_id}-lag")
        self._consumer = AIOKafkaConsumer(
            bootstrap_servers=servers,
            client_id=f"{self._kafka.client_id}-lag",
            group_id=None,
            enable_auto_commit=False,
            fetch_max_wait_ms=100,
            max_partition_fetch_bytes=64 * 1024,
        )
        try:
            await self._call(self._admin.start(), "connecting the admin client")
            await self._call(self._consumer.start(), "connecting the consumer")
        except InfraError:
            await self.close()
            raise

    async def close(self) -> None:
        if self._consumer is not None:
            await self._consumer.stop()
        if self._admin is not None:
            await self._admin.close()
        self._admin = self._consumer = None

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(self, t: type[BaseException] | None, v: BaseException | None, tb: TracebackType | None) -> None:
        await self.close()

    async def _call(self, aw: Any, what: str) -> Any:
        try:
            return await asyncio.wait_for(aw, self._timeout_s)
        except (KafkaError, TimeoutError) as exc:
            detail = str(exc) or type(exc).__name__
            raise InfraError(f"{what} on {self._kafka.bootstrap_servers} failed: {detail}") from exc

    def _clients(self) -> tuple[AIOKafkaAdminClient, AIOKafkaConsumer]:
        if self._admin is None or self._consumer is None:
            raise InfraError("LagMonitor is not started; use `async with LagMonitor(...)`")
        return self._admin, self._consumer

    async def groups(self) -> list[str]:
        """Every consumer group the cluster knows, sorted."""
        admin, _ = self._clients()
        listed = await self._call(admin.list_consumer_groups(), "listing consumer groups")
        return sorted(str(g[0]) for g in listed)

    async def committed(self, group: str) -> dict[TopicPartition, int | None]:
        """The group's commits, plus ``None`` for the other partitions of every topic it committed on.

        Commits on topics or partitions that no longer exist are left out: asking the broker for their
        offsets would hang until the timeout.
        """
        admin, _ = self._clients()
        offsets = await self._call(admin.list_consumer_group_offsets(group), f"reading offsets of group {group!r}")
        topics = sorted({tp.topic for tp in offsets})
        if not topics:
            return {}
        described = await self._call(admin.describe_topics(topics), f"describing topics {topics}")
        live = {
            TopicPartition(d["topic"], p["partition"])
            for d in described
            if d.get("error_code", 0) == 0
            for p in d.get("partitions", [])
        }
        out: dict[TopicPartition, int | None] = {tp: None for tp in live}
        out.update({tp: (m.offset if m.offset >= 0 else None) for tp, m in offsets.items() if tp in live})
        return out

    async def first_timestamps(self, positions: dict[TopicPartition, int]) -> dict[TopicPartition, int]:
        """Timestamp (ms) of the first record at or after each position; partitions not read in time are absent."""
        _, consumer = self._clients()
        if not positions:
            return {}
        consumer.assign(list(positions))
        for tp, offset in positions.items():
            consumer.seek(tp, offset)
        found: dict[TopicPartition, tuple[int, int]] = {}
        deadline = time.monotonic() + self._timeout_s
        try:
            while len(found) < len(positions) and time.monotonic() < deadline:
                batch = await consumer.getmany(*[tp for tp in positions if tp not in found], timeout_ms=200)
                for tp, records in batch.items():
                    for r in records:
                        if r.offset >= positions[tp] and (tp not in found or r.offset < found[tp][0]):
                            found[tp] = (r.offset, r.timestamp)
        finally:
            consumer.unsubscribe()  # stop prefetching between polls
        return {tp: ts for tp, (_, ts) in found.items()}

    async def snapshot(self, groups: Sequence[str] | None = None) -> LagSnapshot:
        """Lag of ``groups`` (every group when ``None`` or empty) on every partition they consume."""
        _, consumer = self._clients()
        names = list(groups) if groups else await self.groups()
        commits = {g: await self.committed(g) for g in names}
        tps = sorted({tp for c in commits.values() for tp in c})
        if not tps:
            return LagSnapshot(self._clock(), ())
        starts = await self._call(consumer.beginning_offsets(tps), "reading log start offsets")
        ends = await self._call(consumer.end_offsets(tps), "reading end offsets")
        lagging = {(tp, _position(off, starts[tp])) for c in commits.values() for tp, off in c.items()}
        stamps = await self._stamps({(tp, pos) for tp, pos in lagging if pos < ends[tp]})
        now = self._clock()
        rows = [
            partition_lag(
                g, tp, off, starts[tp], ends[tp], first_ts_ms=stamps.get((tp, _position(off, starts[tp]))), now=now
            )
            for g, c in commits.items()
            for tp, off in sorted(c.items())
        ]
        return LagSnapshot(now, tuple(rows))

    async def _stamps(self, wanted: set[tuple[TopicPartition, int]]) -> dict[tuple[TopicPartition, int], int]:
        """First-unconsumed timestamps per (partition, position); one fetch round per position a partition has."""
        out: dict[tuple[TopicPartition, int], int] = {}
        pending = sorted(wanted)
        while pending:
            round_pos: dict[TopicPartition, int] = {}
            for tp, pos in pending:
                round_pos.setdefault(tp, pos)
            stamps = await self.first_timestamps(round_pos)
            out.update(((tp, pos), ts) for tp, ts in stamps.items() for pos in (round_pos[tp],))
            pending = [(tp, pos) for tp, pos in pending if round_pos[tp] != pos]
        return out


def _position(committed: int | None, start: int) -> int:
    """Where a group resumes: its commit, or the log start when it never committed or retention passed it."""
    return start if committed is None else max(committed, start)


class LagCollector(Collector):
    """Exposes the latest :class:`LagSnapshot` (pushed by :meth:`update`) on scrape; safe across threads."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self._state: tuple[LagSnapshot | None, bool, float | None] = (None, False, None)
        if registry is not None:
            registry.register(self)

    def update(self, snapshot: LagSnapshot) -> None:
        self._state = (snapshot, True, snapshot.taken_at)

    def failed(self) -> None:
        """The last poll failed: keep the previous numbers, report ``up`` 0."""
        snap, _, last_ok = self._state
        self._state = (snap, False, last_ok)

    def describe(self) -> list[Metric]:
        return list(self._families(None, False, None))

    def collect(self) -> Iterator[Metric]:
        yield from self._families(*self._state)

    @staticmethod
    def _families(snap: LagSnapshot | None, up: bool, last_ok: float | None) -> Iterator[Metric]:
        committed = GaugeMetricFamily("streamrec_consumer_committed_offset", "Committed offset", labels=LABELS)
        end = GaugeMetricFamily("streamrec_consumer_end_offset", "Log end offset (high watermark)", labels=LABELS)
        lag = GaugeMetricFamily("streamrec_consumer_lag_messages", "Messages not yet consumed", labels=LABELS)
        secs = GaugeMetricFamily(
            "streamrec_consumer_lag_seconds", "Age of the oldest unconsumed message", labels=LABELS
        )
        for r in snap.rows if snap is not None else ():
            labels = [r.group, r.topic, str(r.partition)]
            if r.committed is not None:
                committed.add_metric(labels, r.committed)
            end.add_metric(labels, r.end)
            lag.add_metric(labels, r.lag_messages)
            if r.lag_seconds is not None:
                secs.add_metric(labels, r.lag_seconds)
        yield from (committed, end, lag, secs)
        yield GaugeMetricFamily(
            "streamrec_lag_exporter_up", "1 when the last poll of the broker succeeded", value=1.0 if up else 0.0
        )
        ok = GaugeMetricFamily("streamrec_lag_exporter_last_success_timestamp_seconds", "Time of the last good poll")
        if last_ok is not None:
            ok.add_metric([], last_ok)
        yield ok


async def run_exporter(
    monitor: LagMonitor,
    collector: LagCollector,
    groups: Sequence[str],
    *,
    interval_s: float,
    stop: asyncio.Event,
    on_poll: Callable[[LagSnapshot | None], None] | None = None,
) -> None:
    """Poll the broker every ``interval_s`` into ``collector`` until ``stop`` is set; a failed poll marks it down."""
    while not stop.is_set():
        snap: LagSnapshot | None = None
        try:
            snap = await monitor.snapshot(groups)
            collector.update(snap)
        except InfraError:
            collector.failed()  # the exporter keeps running: Kafka outages are what it must report
        if on_poll is not None:
            on_poll(snap)
        with contextlib.suppress(TimeoutError):  # the interval elapsed without a stop: poll again
            await asyncio.wait_for(stop.wait(), interval_s)
