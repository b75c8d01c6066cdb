"""Shadow mode: score each answered request's candidates with a challenger version after the reply is sent,
and log how its ranking differs from the champion's (the ``shadow`` topic and Prometheus)."""

from __future__ import annotations

import asyncio
import logging
import math
import zlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime

import numpy as np
import numpy.typing as npt
from mode import Service
from scipy.stats import rankdata

from agents.funnel.filters import Filtered
from agents.funnel.pipeline import Funnel
from state.user_state import UserState
from streams.errors import StreamrecError
from streams.metrics import WorkerMetrics
from streams.records import RecommendRequest, ShadowRecord

log = logging.getLogger(__name__)
F64 = npt.NDArray[np.float64]
I64 = npt.NDArray[np.int64]


def top_k(values: F64, k: int) -> I64:
    """Indices of the ``k`` highest values, best first; ties keep the lower index first.

    >>> top_k(np.array([0.1, 0.9, 0.5, 0.9]), 3).tolist()
    [1, 3, 2]
    """
    order: I64 = np.argsort(-values, kind="stable")[:k]
    return order


def overlap_at_k(a: I64, b: I64, k: int) -> float:
    """Share of the first ``k`` of ``a`` also among the first ``k`` of ``b`` (over min(k, list length)).

    >>> overlap_at_k(np.array([1, 2, 3]), np.array([3, 4, 1]), 3)
    0.6666666666666666
    """
    n = min(k, len(a), len(b))
    if n == 0:
        return 1.0
    return len(set(a[:n].tolist()) & set(b[:n].tolist())) / n


def spearman(a: F64, b: F64) -> float | None:
    """Spearman's rank correlation (average ranks for ties); None when undefined (n < 2 or a constant side).

    >>> spearman(np.array([1.0, 2.0, 3.0]), np.array([10.0, 30.0, 20.0]))
    0.5
    >>> spearman(np.array([1.0, 1.0]), np.array([0.0, 1.0])) is None
    True
    """
    if len(a) < 2:
        return None
    ra, rb = rankdata(a), rankdata(b)
    sa, sb = float(ra.std()), float(rb.std())
    if sa == 0.0 or sb == 0.0:
        return None
    return float(np.mean((ra - ra.mean()) * (rb - rb.mean())) / (sa * sb))


@dataclass(frozen=True, slots=True)
class ShadowDiff:
    """Champion against challenger over the same candidates (indices into the candidate list)."""

    champion_top: I64
    challenger_top: I64
    overlap: float
    correlation: float | None
    deltas: F64  # challenger minus champion value, at champion_top
    mean_abs_delta: float  # over every candidate


def shadow_diff(champion: F64, challenger: F64, k: int) -> ShadowDiff:
    """Compare two models' values of the same candidates: top-k of each, overlap@k, Spearman, value deltas.

    >>> d = shadow_diff(np.array([3.0, 2.0, 1.0, 0.0]), np.array([0.0, 2.5, 1.0, 3.0]), 2)
    >>> d.champion_top.tolist(), d.challenger_top.tolist(), d.overlap, round(d.correlation or 0.0, 6)
    ([0, 1], [3, 1], 0.5, -0.8)
    >>> d.deltas.tolist(), d.mean_abs_delta
    ([-3.0, 0.5], 1.625)
    """
    if champion.shape != challenger.shape:
        raise ValueError(f"value arrays differ in shape: {champion.shape} vs {challenger.shape}")
    a, b = top_k(champion, k), top_k(challenger, k)
    deltas: F64 = challenger[a] - champion[a]
    mad = float(np.abs(challenger - champion).mean()) if len(champion) else 0.0
    return ShadowDiff(a, b, overlap_at_k(a, b, k), spearman(champion, challenger), deltas, mad)


def sampled(correlation_id: str, share: float) -> bool:
    """Whether a request is shadow-scored: a stable hash of its correlation id under ``share``.

    >>> sampled("c1", 1.0), sampled("c1", 0.0)
    (True, False)
    """
    return zlib.crc32(correlation_id.encode()) < share * 2**32


@dataclass(frozen=True, slots=True)
class ShadowJob:
    """One answered request: what the champion saw and valued, to be re-scored by the challenger."""

    request: RecommendRequest
    state: UserState | None
    kept: Filtered
    values: F64
    champion_version: str
    now: float


def shadow_record(job: ShadowJob, challenger: str, values: F64, k: int) -> tuple[ShadowRecord, ShadowDiff]:
    """The shadow-topic record comparing the champion's values of ``job`` with the challenger's ``values``."""
    diff = shadow_diff(job.values, values, k)
    ids = [c.item_id for c in job.kept.kept]
    rho = diff.correlation
    record = ShadowRecord(
        correlation_id=job.request.correlation_id,
        user_id=job.request.user_id,
        champion_version=job.champion_version,
        challenger_version=challenger,
        k=k,
        n_candidates=len(ids),
        champion_top=[ids[i] for i in diff.champion_top.tolist()],
        challenger_top=[ids[i] for i in diff.challenger_top.tolist()],
        overlap_at_k=diff.overlap,
        rank_correlation=None if rho is None or math.isnan(rho) else round(rho, 6),
        score_deltas=[round(float(d), 6) for d in diff.deltas.tolist()],
        mean_abs_delta=round(diff.mean_abs_delta, 6),
        ts=datetime.fromtimestamp(job.now, UTC),
    )
    return record, diff


Send = Callable[[ShadowRecord], Awaitable[None]]


class ShadowScorer(Service):
    """A bounded queue of jobs drained by one task: scoring never runs before a reply has been sent.

    ``submit`` never waits: when ``capacity`` jobs are pending the new one is dropped and counted.
    """

    def __init__(
        self,
        challenger: Callable[[], tuple[str, Funnel] | None],
        send: Send,
        metrics: WorkerMetrics,
        *,
        k: int,
        capacity: int,
    ) -> None:
        super().__init__()
        self.challenger, self.send, self.metrics, self.k = challenger, send, metrics, k
        self.queue: asyncio.Queue[ShadowJob] = asyncio.Queue(maxsize=capacity)
        self.scored = 0

    def submit(self, job: ShadowJob) -> bool:
        try:
            self.queue.put_nowait(job)
        except asyncio.QueueFull:
            self.metrics.shadow_outcome("dropped")
            return False
        return True

    async def score(self, job: ShadowJob) -> ShadowRecord | None:
        """Score one job with the current challenger, send and observe the record (None: nothing to compare)."""
        current = self.challenger()
        if current is None:
            return None
        version, funnel = current
        values = funnel.rescore(job.request, job.state, job.kept, now=job.now)
        if values is None:
            self.metrics.shadow_outcome("unranked")
            return None
        record, diff = shadow_record(job, version, values, self.k)
        await self.send(record)
        self.metrics.shadow(diff.overlap, diff.correlation)
        self.scored += 1
        return record

    @Service.task
    async def _drain(self) -> None:
        while not self.should_stop:
            job = await self.queue.get()
            try:
                await self.score(job)
            except (StreamrecError, ValueError) as exc:
                self.metrics.shadow_outcome("failed")
                log.warning("shadow scoring of %s failed: %s", job.request.correlation_id, exc)
