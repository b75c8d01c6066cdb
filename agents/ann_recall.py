"""ANN recall sampled against exact search: a small share of live searches re-run exactly, off the hot path."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

from agents.funnel.candidates import RetrievalContext, Scored
from agents.funnel.sources import AnnSource
from state.ann import AnnIndex, all_vectors
from streams.metrics import WorkerMetrics

F32 = npt.NDArray[np.float32]


def exact_top(vectors: F32, queries: F32, k: int) -> npt.NDArray[np.int64]:
    """Row indices of the ``k`` largest inner products per query, best first.

    >>> exact_top(np.eye(3, dtype=np.float32), np.array([[0.1, 0.9, 0.5]], np.float32), 2).tolist()
    [[1, 2]]
    """
    scores = queries @ vectors.T
    k = min(k, vectors.shape[0])
    part = np.argpartition(-scores, k - 1, axis=1)[:, :k]
    order = np.argsort(-np.take_along_axis(scores, part, axis=1), axis=1, kind="stable")
    return np.take_along_axis(part, order, axis=1).astype(np.int64)


class RecallSampler:
    """Keeps ``rate`` of the searches offered (query and ids found); ``check`` recomputes them exactly.

    ``offer`` is on the hot path (one random draw, a copy when sampled); ``check`` runs in a thread: it
    reconstructs the index's vectors once, computes the exact top-k of each kept query (``k`` as asked of the
    index, capped at its size), and reports recall@k (mean as the ``ann_recall`` gauge, each
    search into the ``ann_recall_sampled`` histogram).
    """

    def __init__(
        self,
        index: AnnIndex,
        item_ids: Sequence[str],
        metrics: WorkerMetrics,
        *,
        rate: float,
        rng: np.random.Generator,
        max_pending: int = 64,
    ) -> None:
        self.index, self.item_ids, self.metrics = index, tuple(item_ids), metrics
        self.rate, self.rng, self.max_pending = rate, rng, max_pending
        self._pending: list[tuple[F32, int, tuple[str, ...]]] = []
        self._vectors: tuple[list[str], F32] | None = None

    def offer(self, query: F32, k: int, found: Scored) -> None:
        """One search for ``k`` neighbours of ``query`` that returned ``found`` (missing slots count as misses)."""
        if self.rng.random() >= self.rate or len(self._pending) >= self.max_pending:
            return
        self._pending.append((np.array(query, np.float32).ravel(), k, tuple(i for i, _ in found)))

    def _exact(self) -> tuple[list[str], F32]:
        if self._vectors is None:
            ids, vecs = all_vectors(self.index)
            n = len(self.item_ids)
            keep = (ids >= 0) & (ids < n)
            self._vectors = ([self.item_ids[i] for i in ids[keep].tolist()], vecs[keep])
        return self._vectors

    def check(self) -> list[float]:
        """Recall@k of every search kept since the last call (reported to the metrics), oldest first."""
        batch, self._pending = self._pending, []
        if not batch:
            return []
        names, vecs = self._exact()
        if not names:
            return []
        queries = np.stack([q for q, _, _ in batch])
        top = exact_top(vecs, queries, max(k for _, k, _ in batch))
        recalls = []
        for (_, k, found), row in zip(batch, top, strict=True):
            truth = {names[j] for j in row[:k].tolist()}
            recalls.append(len(truth.intersection(found)) / max(1, len(truth)))
        self.metrics.ann_recall(float(np.mean(recalls)))
        self.metrics.ann_recall_sampled(recalls)
        return recalls


class SampledAnnSource:
    """An ANN candidate source whose searches are offered to a :class:`RecallSampler`."""

    uses_vector = True  # like the source it wraps: the funnel hands it the session vector

    def __init__(self, inner: AnnSource, sampler: RecallSampler) -> None:
        self.inner, self.sampler = inner, sampler

    @property
    def name(self) -> str:
        return self.inner.name

    async def fetch(self, ctx: RetrievalContext) -> Scored:
        out = await self.inner.fetch(ctx)
        if ctx.user_vector is not None:
            self.sampler.offer(ctx.user_vector, self.inner.k, out)
        return out


def build_recall(
    index: AnnIndex | None, item_ids: Sequence[str], metrics: WorkerMetrics, *, enabled: bool, rate: float, seed: int
) -> RecallSampler | None:
    """A sampler for a version's index, or None (no index, metrics off, or a zero rate: no wrapping at all)."""
    if index is None or not enabled or rate <= 0.0:
        return None
    return RecallSampler(index, item_ids, metrics, rate=rate, rng=np.random.default_rng(seed))
