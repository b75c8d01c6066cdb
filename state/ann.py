"""Inner-product nearest-neighbour indexes over item embeddings (FAISS): exact and HNSW backends."""

from __future__ import annotations

from pathlib import Path
from typing import Literal, Protocol

import numpy as np
import numpy.typing as npt

from models.errors import AnnError

AnnKind = Literal["exact", "hnsw"]
IdArray = npt.NDArray[np.int64]
VecArray = npt.NDArray[np.float32]


class AnnIndex(Protocol):
    """A maximum-inner-product index from int64 item ids to float32 vectors."""

    @property
    def dim(self) -> int: ...

    def __len__(self) -> int: ...

    def add(self, ids: IdArray, vectors: VecArray) -> None:
        """Add vectors under ``ids`` without rebuilding what is already indexed; never changes ``dim``."""
        ...

    def search(self, queries: VecArray, k: int) -> tuple[IdArray, VecArray]:
        """Top-``k`` ids and scores per query, best first; missing slots are id ``-1`` with score ``-inf``.

        Must not mutate the index; safe to call from one thread at a time.
        """
        ...

    def save(self, path: Path) -> None:
        """Write the whole index to one file, atomically (a temporary file renamed into place)."""
        ...


class _FaissIndex:
    """Shared mechanics: id mapping, input validation, search post-processing, persistence."""

    kind: AnnKind

    def __init__(self, index: object, dim: int) -> None:
        self._index = index
        self._dim = dim

    @property
    def dim(self) -> int:
        return self._dim

    def __len__(self) -> int:
        return int(self._index.ntotal)  # type: ignore[attr-defined]

    def add(self, ids: IdArray, vectors: VecArray) -> None:
        vecs = self._check(vectors, "vectors")
        ids = np.ascontiguousarray(ids, dtype=np.int64)
        if ids.ndim != 1 or ids.shape[0] != vecs.shape[0]:
            raise AnnError(f"add: {ids.shape[0]} ids for {vecs.shape[0]} vectors")
        if ids.size and ids.min() < 0:
            raise AnnError("add: ids must be non-negative (-1 marks an empty result slot)")
        self._index.add_with_ids(vecs, ids)  # type: ignore[attr-defined]

    def search(self, queries: VecArray, k: int) -> tuple[IdArray, VecArray]:
        q = self._check(queries, "queries")
        if k < 1:
            raise AnnError(f"search: k must be >= 1, got {k}")
        scores, ids = self._index.search(q, k)  # type: ignore[attr-defined]
        scores = np.where(ids < 0, -np.inf, scores).astype(np.float32)
        return ids.astype(np.int64), scores

    def save(self, path: Path) -> None:
        import faiss

        path = Path(path)
        tmp = path.with_name(path.name + ".tmp")
        try:
            faiss.write_index(self._index, str(tmp))
            tmp.replace(path)
        except (RuntimeError, OSError) as exc:
            raise AnnError(f"{path}: cannot write index: {exc}") from exc

    def _check(self, arr: VecArray, what: str) -> VecArray:
        a = np.ascontiguousarray(arr, dtype=np.float32)
        if a.ndim != 2 or a.shape[1] != self._dim:
            raise AnnError(f"{what} must have shape [n, {self._dim}], got {list(a.shape)}")
        if not np.all(np.isfinite(a)):
            raise AnnError(f"{what} contain NaN or infinite values")
        return a


class ExactIndex(_FaissIndex):
    """Brute-force inner product (``IndexFlatIP``): the reference every approximate backend is measured against."""

    kind: AnnKind = "exact"

    def __init__(self, dim: int, _index: object | None = None) -> None:
        import faiss

        super().__init__(faiss.IndexIDMap2(faiss.IndexFlatIP(dim)) if _index is None else _index, dim)


class HnswIndex(_FaissIndex):
    """HNSW graph over raw vectors with inner-product metric (``IndexHNSWFlat``)."""

    kind: AnnKind = "hnsw"

    def __init__(
        self, dim: int, m: int = 32, ef_construction: int = 80, ef_search: int = 256, _index: object | None = None
    ) -> None:
        import faiss

        if _index is None:
            hnsw = faiss.IndexHNSWFlat(dim, m, faiss.METRIC_INNER_PRODUCT)
            hnsw.hnsw.efConstruction = ef_construction
            _index = faiss.IndexIDMap2(hnsw)
        super().__init__(_index, dim)
        self.ef_search = ef_search

    @property
    def ef_search(self) -> int:
        return int(self._hnsw().hnsw.efSearch)

    @ef_search.setter
    def ef_search(self, value: int) -> None:
        if value < 1:
            raise AnnError(f"ef_search must be >= 1, got {value}")
        self._hnsw().hnsw.efSearch = value

    def _hnsw(self) -> object:
        import faiss

        return faiss.downcast_index(self._index.index)  # type: ignore[attr-defined]


def build_index(kind: AnnKind, ids: IdArray, vectors: VecArray, **params: int) -> ExactIndex | HnswIndex:
    """Create an index of ``kind`` and add ``vectors`` under ``ids``."""
    dim = int(np.shape(vectors)[1])
    index: ExactIndex | HnswIndex
    if kind == "exact":
        index = ExactIndex(dim)
    elif kind == "hnsw":
        index = HnswIndex(dim, **params)
    else:
        raise AnnError(f"unknown index kind {kind!r}; valid kinds: exact, hnsw")
    index.add(ids, vectors)
    return index


def load_index(path: Path) -> ExactIndex | HnswIndex:
    """Read an index written by ``save``; a missing, corrupt or foreign file raises :class:`AnnError`."""
    import faiss

    path = Path(path)
    if not path.is_file():
        raise AnnError(f"{path}: index file not found")
    try:
        raw = faiss.read_index(str(path))
    except RuntimeError as exc:
        raise AnnError(f"{path}: not a readable FAISS index ({str(exc).splitlines()[0][:120]})") from exc
    outer = faiss.downcast_index(raw)
    if not isinstance(outer, faiss.IndexIDMap2):
        raise AnnError(f"{path}: expected an id-mapped index, found {type(outer).__name__}")
    inner = faiss.downcast_index(outer.index)
    if inner.metric_type != faiss.METRIC_INNER_PRODUCT:
        raise AnnError(f"{path}: index metric is not inner product")
    if isinstance(inner, faiss.IndexHNSWFlat):
        return HnswIndex(outer.d, _index=outer, ef_search=int(inner.hnsw.efSearch))
    if isinstance(inner, faiss.IndexFlatIP):
        return ExactIndex(outer.d, _index=outer)
    raise AnnError(f"{path}: unsupported index type {type(inner).__name__}")


def recall_at_k(approx: IdArray, exact: IdArray) -> float:
    """Mean fraction of the exact top-k ids found by the approximate search.

    >>> recall_at_k(np.array([[1, 2, 3]]), np.array([[3, 4, 1]]))
    0.6666666666666666
    """
    k = exact.shape[1]
    hits = sum(len(set(a.tolist()) & set(e.tolist()) - {-1}) for a, e in zip(approx, exact, strict=True))
    return hits / (exact.shape[0] * k)
