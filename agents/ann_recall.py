"""ANN recall sampled against exact search: a small share of live searches re-run exactly, off the hot path."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence

import numpy as np
import numpy.typing as npt

from agents.funnel.candidates import RetrievalContext, Scored
from agents.funnel.sources import AnnSource
from state.ann import AnnIndex, all_vectors, no_rest
from streams.metrics import WorkerMetrics

F32 = npt.NDArray[np.float32]


def exact_top(
    vectors: F32,
    queries: F32,
    k: int,
    *,
    chunk_rows: int | None = None,
    rest: Callable[[float], None] = no_rest,
) -> npt.NDArray[np.int64]:
    """Row indices of the ``k`` largest inner products per query, best first.

    With ``chunk_rows`` the rows are searched a chunk at a time, keeping each query's best ``k`` so far,
    and ``rest(busy_s)`` is called after every chunk with the seconds the chunk took: a caller in a thread
    sleeps there, so an exact search over a million vectors never holds a core for long.

    >>> v, q = np.eye(3, dtype=np.float32), np.array([[0.1, 0.9, 0.5]], np.float32)
    >>> exact_top(v, q, 2).tolist(), exact_top(v, q, 2, chunk_rows=1).tolist()
    ([[1, 2]], [[1, 2]])
    """
    k = min(k, vectors.shape[0])
    n = vectors.shape[0]
    step = n if chunk_rows is None else max(1, chunk_rows)
    best_s = np.full((len(queries), 0), -np.inf, np.float32)
    best_i = np.zeros((len(queries), 0), np.int64)
    for start in range(0, n, step):
        began = time.perf_counter()
        scores = np.concatenate([best_s, queries @ vectors[start : start + step].T], axis=1)
        chunk = np.broadcast_to(np.arange(start, min(n, start + step)), (len(queries), min(n, start + step) - start))
        rows = np.concatenate([best_i, chunk], axis=1)
        if scores.shape[1] > k:
            part = np.argpartition(-scores, k - 1, axis=1)[:, :k]
            scores, rows = np.take_along_axis(scores, part, axis=1), np.take_along_axis(rows, part, axis=1)
        best_s, best_i = scores, rows
        rest(time.perf_counter() - began)
    # Ties (equal scores) are ordered by row, as a single stable sort over all the rows would.
    order = np.lexsort((best_i, -best_s), axis=1) if best_s.size else np.zeros_like(best_i)
    return np.take_along_axis(best_i, order, axis=1).astype(np.int64)


class RecallSampler:
    """Keeps ``rate`` of the searches offered (query and ids found); ``check`` recomputes them exactly.

    ``offer`` is on the hot path (one random draw, a copy when sampled); ``check`` runs in a thread: it
    reconstructs the index's vectors once, computes the exact top-k of each kept query (``k`` as asked of the
    index, capped at its size), and reports recall@k (mean as the ``ann_recall`` gauge, each
    search into the ``ann_recall_sampled`` histogram).

    The exact search goes ``chunk_rows`` vectors at a time and sleeps after each chunk so that it keeps a
    core busy at most ``duty`` of the time: done in one go over a million vectors it took a core for
    ~100 ms every check, and on a small machine the serving loop's answers queued behind it.
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
        chunk_rows: int = 65_536,
        duty: float = 1.0,
    ) -> None:
        self.index, self.item_ids, self.metrics = index, tuple(item_ids), metrics
        self.rate, self.rng, self.max_pending = rate, rng, max_pending
        self.chunk_rows, self.duty = chunk_rows, min(1.0, max(duty, 1e-3))
        self._pending: list[tuple[F32, int, tuple[str, ...]]] = []
        self._vectors: tuple[npt.NDArray[np.int64], F32] | None = None

    def offer(self, query: F32, k: int, found: Scored) -> None:
        """One search for ``k`` neighbours of ``query`` that returned ``found`` (missing slots count as misses)."""
        if self.rng.random() >= self.rate or len(self._pending) >= self.max_pending:
            return
        self._pending.append((np.array(query, np.float32).ravel(), k, tuple(i for i, _ in found)))

    def _exact(self) -> tuple[npt.NDArray[np.int64], F32]:
        """The index's ids (positions in ``item_ids``) and vectors, reconstructed once, a chunk at a time."""
        if self._vectors is None:
            ids, vecs = all_vectors(self.index, chunk_rows=self.chunk_rows, rest=self._rest)
            keep = (ids >= 0) & (ids < len(self.item_ids))
            self._vectors = (ids, vecs) if keep.all() else (ids[keep], vecs[keep])
        return self._vectors

    def _rest(self, busy_s: float) -> None:
        if self.duty < 1.0:
            self._rest_sleep(busy_s * (1.0 - self.duty) / self.duty)

    def _rest_sleep(self, seconds: float) -> None:
        time.sleep(seconds)

    def check(self) -> list[float]:
        """Recall@k of every search kept since the last call (reported to the metrics), oldest first.

        The first call also reconstructs the index's vectors, once, sampled searches or not.
        """
        batch, self._pending = self._pending, []
        # The first call reconstructs the vectors even with nothing to check: the first timer tick after a
        # model is loaded, before traffic has sampled anything, rather than in the middle of serving it.
        positions, vecs = self._exact()
        if not batch or not len(positions):
            return []
        queries = np.stack([q for q, _, _ in batch])
        top = exact_top(vecs, queries, max(k for _, k, _ in batch), chunk_rows=self.chunk_rows, rest=self._rest)
        recalls = []
        for (_, k, found), row in zip(batch, top, strict=True):
            truth = {self.item_ids[j] for j in positions[row[:k]].tolist()}
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
    index: AnnIndex | None,
    item_ids: Sequence[str],
    metrics: WorkerMetrics,
    *,
    enabled: bool,
    rate: float,
    seed: int,
    duty: float = 1.0,
) -> RecallSampler | None:
    """A sampler for a version's index, or None (no index, metrics off, or a zero rate: no wrapping at all)."""
    if index is None or not enabled or rate <= 0.0:
        return None
    return RecallSampler(index, item_ids, metrics, rate=rate, rng=np.random.default_rng(seed), duty=duty)
