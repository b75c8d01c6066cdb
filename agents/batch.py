"""Batch scoring: the serving funnel run over every user in the online store, lists written to a sink.

The funnel is the one workers serve with (built by ``agents.serving_setup``), with exploration off so a
list is the model's best; only the reading is batched: user ids by ``scan_users``, states and session
vectors by ``read_users`` / ``read_user_vectors`` for a chunk at a time.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np
import numpy.typing as npt

from agents.funnel.outcome import FunnelResult
from agents.funnel.pipeline import Funnel
from state.items import ItemRecord
from state.precomputed import PrecomputedList
from state.store import OnlineFeatureStore
from state.user_state import UserState
from streams.clock import Clock
from streams.errors import StreamrecError
from streams.jobs import JobCounts
from streams.records import RecommendRequest

log = logging.getLogger(__name__)
F32 = npt.NDArray[np.float32]
#: Degradations that leave no model-ranked list: such a user counts as failed and nothing is written for it.
UNRANKED = frozenset({"no_ranker", "ranker_error", "no_candidates"})


class RecSink(Protocol):
    """Where batch lists go (Redis for serving, Parquet for analysis)."""

    async def write(self, lists: Sequence[PrecomputedList]) -> None:
        """Persist ``lists`` (one chunk); raise ``StreamrecError`` when the sink refuses."""
        ...

    async def close(self) -> dict[str, object]:
        """Flush and release; returns what the job record should say about the output (path, rows...)."""
        ...


@dataclass(frozen=True, slots=True)
class BatchConfig:
    """How a batch run walks the users: at most ``max_users`` (None: all), ``chunk_size`` at a time."""

    top_k: int = 10
    max_users: int | None = None
    chunk_size: int = 256
    concurrency: int = 8
    scan_count: int = 1000
    surface: str = "home"

    def __post_init__(self) -> None:
        if self.top_k < 1 or self.chunk_size < 1 or self.concurrency < 1 or self.scan_count < 1:
            raise ValueError(f"invalid batch config {self}")
        if self.max_users is not None and self.max_users < 0:
            raise ValueError(f"max_users must be >= 0, got {self.max_users}")


@dataclass
class BatchSummary:
    """What a run did, for the job record and ``--json``."""

    counts: JobCounts = field(default_factory=JobCounts)
    skipped: int = 0  # listed by the scan but gone (expired) by the time it was read
    seconds: float = 0.0
    degraded: dict[str, int] = field(default_factory=dict)

    @property
    def users_per_s(self) -> float:
        return self.counts.users / self.seconds if self.seconds > 0 else 0.0


async def list_users(store: OnlineFeatureStore, scan_count: int, max_users: int | None) -> list[str]:
    """Distinct user ids with stored state, in scan order, at most ``max_users``."""
    seen: dict[str, None] = {}
    cursor: str | None = None
    while max_users is None or len(seen) < max_users:
        cursor, page = await store.scan_users(cursor, scan_count)
        seen.update(dict.fromkeys(page))
        if cursor is None:
            break
    ids = list(seen)
    return ids if max_users is None else ids[:max_users]


async def load_catalog(store: OnlineFeatureStore, item_ids: Sequence[str], chunk: int = 2000) -> dict[str, ItemRecord]:
    """Records of ``item_ids`` (those the store has), read once so every user's run takes them from memory."""
    out: dict[str, ItemRecord] = {}
    for k in range(0, len(item_ids), chunk):
        ids = list(item_ids[k : k + chunk])
        out.update((i, r) for i, r in zip(ids, await store.read_items(ids), strict=True) if r is not None)
    return out


def to_list(result: FunnelResult, user_id: str, *, model_version: str, job_id: str, now: float) -> PrecomputedList:
    return PrecomputedList.of(
        user_id,
        [(i.item_id, i.score) for i in result.items],
        model_version=model_version,
        job_id=job_id,
        created_at=now,
    )


@dataclass
class BatchScorer:
    """Scores chunks of users with ``funnel`` and hands the lists to ``sink``."""

    funnel: Funnel
    store: OnlineFeatureStore
    sink: RecSink
    cfg: BatchConfig
    clock: Clock
    model_version: str
    job_id: str

    async def score_chunk(self, user_ids: Sequence[str], summary: BatchSummary) -> list[PrecomputedList]:
        """One chunk: batched reads, funnel runs ``concurrency`` at a time, failures counted (never raised)."""
        states = await self.store.read_users(user_ids)
        vectors: dict[str, F32] = {}
        if self.funnel.vectors is not None:
            got = await self.store.read_user_vectors(user_ids)
            vectors = {u: v for u, v in zip(user_ids, got, strict=True) if v is not None}
        gate = asyncio.Semaphore(self.cfg.concurrency)
        now = self.clock.now()
        live = [(u, s) for u, s in zip(user_ids, states, strict=True) if s is not None]
        summary.skipped += len(user_ids) - len(live)
        results = await asyncio.gather(*(self._one(u, s, vectors, now, gate) for u, s in live))
        lists = []
        for (user, _), res in zip(live, results, strict=True):
            if res is None:
                continue
            for d in res.degraded:
                summary.degraded[d] = summary.degraded.get(d, 0) + 1
            if not UNRANKED & set(res.degraded):
                lists.append(to_list(res, user, model_version=self.model_version, job_id=self.job_id, now=now))
        return lists

    async def _one(
        self, user: str, state: UserState, vectors: dict[str, F32], now: float, gate: asyncio.Semaphore
    ) -> FunnelResult | None:
        req = RecommendRequest(
            correlation_id=f"{self.job_id}:{user}", user_id=user, k=self.cfg.top_k, surface=self.cfg.surface
        )
        async with gate:
            try:
                return await self.funnel.run(req, state, now=now, user_vectors=vectors)
            except StreamrecError as exc:
                log.warning("batch: user %s not scored: %s", user, exc)
                return None

    async def run(
        self, user_ids: Sequence[str], on_progress: Callable[[JobCounts], None] | None = None
    ) -> BatchSummary:
        """Every chunk of ``user_ids`` scored and written; a sink failure stops the run (and propagates)."""
        summary = BatchSummary()
        start = time.perf_counter()
        users = written = failed = 0
        for k in range(0, len(user_ids), self.cfg.chunk_size):
            chunk = user_ids[k : k + self.cfg.chunk_size]
            skipped_before = summary.skipped
            lists = await self.score_chunk(chunk, summary)
            await self.sink.write(lists)
            scored = len(chunk) - (summary.skipped - skipped_before)
            users, written, failed = users + scored, written + len(lists), failed + scored - len(lists)
            summary.counts = JobCounts(users=users, written=written, failed=failed)
            if on_progress is not None:
                on_progress(summary.counts)
        summary.seconds = time.perf_counter() - start
        return summary
