"""Inner-product nearest-neighbour indexes over item embeddings (FAISS): exact, HNSW and IVF backends."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal, Protocol

import numpy as np
import numpy.typing as npt

from models.errors import AnnError

AnnKind = Literal["exact", "hnsw", "ivf"]
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

    def __init__(self, index: Any, dim: int) -> None:
        self._index = index
        self._dim = dim

    @property
    def dim(self) -> int:
        return self._dim

    def __len__(self) -> int:
        return int(self._index.ntotal)

    def add(self, ids: IdArray, vectors: VecArray) -> None:
        self._add_raw(ids, self._check(vectors, "vectors"))

    def _add_raw(self, ids: IdArray, vecs: VecArray) -> None:
        ids = np.ascontiguousarray(ids, dtype=np.int64)
        if ids.ndim != 1 or ids.shape[0] != vecs.shape[0]:
            raise AnnError(f"add: {ids.shape[0]} ids for {vecs.shape[0]} vectors")
        if ids.size and ids.min() < 0:
            raise AnnError("add: ids must be non-negative (-1 marks an empty result slot)")
        self._index.add_with_ids(vecs, ids)

    def search(self, queries: VecArray, k: int) -> tuple[IdArray, VecArray]:
        q = self._check(queries, "queries")
        if k < 1:
            raise AnnError(f"search: k must be >= 1, got {k}")
        scores, ids = self._index.search(q, k)
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

    def stored(self) -> tuple[IdArray, VecArray] | None:
        """Every stored ``(ids, vectors)`` when the backend keeps them exactly (the exact index), else None."""
        import faiss

        inner = getattr(self._index, "index", None)
        if not isinstance(self._index, faiss.IndexIDMap2) or inner is None or not hasattr(inner, "reconstruct_n"):
            return None
        ids = faiss.vector_to_array(self._index.id_map).astype(np.int64)
        return ids, np.asarray(inner.reconstruct_n(0, inner.ntotal), dtype=np.float32)

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
    """HNSW graph (``IndexHNSWFlat``) searched for maximum inner product through an exact reduction to L2.

    Each vector ``x`` is stored as ``[x, sqrt(R^2 - |x|^2)]`` and each query as ``[q, 0]``, so the L2 order is
    the inner-product order; HNSW graphs built on L2 reach a given recall with a much smaller ``ef_search``
    than graphs built on inner product. ``R`` is fixed by the first ``add`` (its largest norm times
    ``headroom``); a later vector longer than ``R`` is still indexed but ranks as if its norm were ``R``.
    """

    kind: AnnKind = "hnsw"

    def __init__(self, dim: int, m: int = 32, ef_construction: int = 80, ef_search: int = 256,
                 headroom: float = 1.25, _index: object | None = None, _radius: float | None = None) -> None:
        import faiss

        if _index is None:
            hnsw = faiss.IndexHNSWFlat(dim + 1, m, faiss.METRIC_L2)
            hnsw.hnsw.efConstruction = ef_construction
            _index = faiss.IndexIDMap2(hnsw)
        super().__init__(_index, dim)
        self.headroom = headroom
        self.radius = _radius
        self.ef_search = ef_search

    @property
    def ef_search(self) -> int:
        return int(self._hnsw().hnsw.efSearch)

    @ef_search.setter
    def ef_search(self, value: int) -> None:
        if value < 1:
            raise AnnError(f"ef_search must be >= 1, got {value}")
        self._hnsw().hnsw.efSearch = value

    def _hnsw(self) -> Any:
        import faiss

        return faiss.downcast_index(self._index.index)

    def add(self, ids: IdArray, vectors: VecArray) -> None:
        vecs = self._check(vectors, "vectors")
        sq = np.einsum("ij,ij->i", vecs, vecs)
        if self.radius is None:
            self.radius = float(np.sqrt(sq.max(initial=0.0))) * self.headroom or 1.0
        extra = np.sqrt(np.maximum(self.radius**2 - sq, 0.0))[:, None]
        self._add_raw(ids, np.hstack([vecs, extra]).astype(np.float32))

    def search(self, queries: VecArray, k: int) -> tuple[IdArray, VecArray]:
        q = self._check(queries, "queries")
        if k < 1:
            raise AnnError(f"search: k must be >= 1, got {k}")
        padded = np.hstack([q, np.zeros((q.shape[0], 1), dtype=np.float32)])
        dist, ids = self._index.search(padded, k)
        radius = self.radius or 0.0
        scores = 0.5 * (np.einsum("ij,ij->i", q, q)[:, None] + radius**2 - dist)
        return ids.astype(np.int64), np.where(ids < 0, -np.inf, scores).astype(np.float32)


class IvfIndex(_FaissIndex):
    """Inverted file over raw vectors (``IndexIVFFlat``, inner product): scans the ``nprobe`` closest of
    ``nlist`` k-means cells. The first ``add`` trains the cells on (a seeded sample of) its vectors, so
    ``nlist`` shrinks to keep about 39 training points per cell; later adds go into the trained cells.
    """

    kind: AnnKind = "ivf"

    def __init__(self, dim: int, nlist: int = 2048, nprobe: int = 64, train_size: int = 100_000, seed: int = 0,
                 _index: Any = None) -> None:
        super().__init__(_index, dim)
        self.nlist, self.train_size, self.seed = nlist, train_size, seed
        self._nprobe = nprobe
        if _index is not None:
            self._ivf().nprobe = nprobe

    @property
    def nprobe(self) -> int:
        return self._nprobe

    @nprobe.setter
    def nprobe(self, value: int) -> None:
        if value < 1:
            raise AnnError(f"nprobe must be >= 1, got {value}")
        self._nprobe = value
        if self._index is not None:
            self._ivf().nprobe = value

    def _ivf(self) -> Any:
        import faiss

        return faiss.extract_index_ivf(self._index)

    def __len__(self) -> int:
        return 0 if self._index is None else int(self._index.ntotal)

    def add(self, ids: IdArray, vectors: VecArray) -> None:
        vecs = self._check(vectors, "vectors")
        if self._index is None:
            self._index = self._train(vecs)
        self._add_raw(ids, vecs)

    def _train(self, vecs: VecArray) -> Any:
        import faiss

        if vecs.shape[0] == 0:
            raise AnnError("the first add of an IVF index needs vectors to train its cells on")
        nlist = max(1, min(self.nlist, vecs.shape[0] // 39))
        rng = np.random.default_rng(self.seed)
        sample = vecs if vecs.shape[0] <= self.train_size else vecs[rng.choice(vecs.shape[0], self.train_size,
                                                                               replace=False)]
        quantizer = faiss.IndexFlatIP(self._dim)
        ivf = faiss.IndexIVFFlat(quantizer, self._dim, nlist, faiss.METRIC_INNER_PRODUCT)
        ivf.cp.seed = self.seed
        ivf.train(sample)
        ivf.nprobe = self._nprobe
        ivf.own_fields = True
        quantizer.this.disown()  # type: ignore[attr-defined]  # the IVF index owns its quantizer now
        return faiss.IndexIDMap2(ivf)

    def search(self, queries: VecArray, k: int) -> tuple[IdArray, VecArray]:
        if self._index is None:
            q = self._check(queries, "queries")
            return np.full((q.shape[0], k), -1, dtype=np.int64), np.full((q.shape[0], k), -np.inf, np.float32)
        return super().search(queries, k)


def build_index(kind: AnnKind, ids: IdArray, vectors: VecArray, **params: int) -> ExactIndex | HnswIndex | IvfIndex:
    """Create an index of ``kind`` and add ``vectors`` under ``ids``."""
    dim = int(np.shape(vectors)[1])
    index: ExactIndex | HnswIndex | IvfIndex
    if kind == "exact":
        index = ExactIndex(dim)
    elif kind == "hnsw":
        index = HnswIndex(dim, **params)
    elif kind == "ivf":
        index = IvfIndex(dim, **params)
    else:
        raise AnnError(f"unknown index kind {kind!r}; valid kinds: exact, hnsw, ivf")
    index.add(ids, vectors)
    return index


def load_index(path: Path) -> ExactIndex | HnswIndex | IvfIndex:
    """Read an index written by ``save``; a missing, corrupt or foreign file raises :class:`AnnError`."""
    import faiss

    path = Path(path)
    if not path.is_file():
        raise AnnError(f"{path}: index file not found")
    try:
        raw = faiss.read_index(str(path))
    except RuntimeError as exc:
        raise AnnError(f"{path}: not a readable FAISS index ({str(exc).splitlines()[0][:120]})") from exc
    # keep the object read_index returned: a downcast wrapper does not own the C++ index and would dangle
    outer = raw
    if not isinstance(outer, faiss.IndexIDMap2):
        raise AnnError(f"{path}: expected an id-mapped index, found {type(outer).__name__}")
    inner = faiss.downcast_index(outer.index)
    if isinstance(inner, faiss.IndexHNSWFlat) and inner.metric_type == faiss.METRIC_L2:
        radius = float(np.linalg.norm(outer.reconstruct(int(faiss.vector_to_array(outer.id_map)[0])))) \
            if outer.ntotal else None
        return HnswIndex(outer.d - 1, _index=outer, _radius=radius, ef_search=int(inner.hnsw.efSearch))
    if isinstance(inner, faiss.IndexIVFFlat) and inner.metric_type == faiss.METRIC_INNER_PRODUCT:
        return IvfIndex(outer.d, nlist=int(inner.nlist), nprobe=int(inner.nprobe), _index=outer)
    if isinstance(inner, faiss.IndexFlatIP):
        return ExactIndex(outer.d, _index=outer)
    raise AnnError(f"{path}: unsupported index type {type(inner).__name__} (metric {inner.metric_type})")


def recall_at_k(approx: IdArray, exact: IdArray) -> float:
    """Mean fraction of the exact top-k ids found by the approximate search.

    >>> recall_at_k(np.array([[1, 2, 3]]), np.array([[3, 4, 1]]))
    0.6666666666666666
    """
    k = int(exact.shape[1])
    hits: int = sum(len(set(a.tolist()) & set(e.tolist()) - {-1}) for a, e in zip(approx, exact, strict=True))
    return float(hits) / float(exact.shape[0] * k)


def no_rest(busy_s: float) -> None:
    """The default ``rest`` of chunked work (:func:`all_vectors`, ``agents.ann_recall.exact_top``): none."""
    return None


def all_vectors(
    index: AnnIndex, *, chunk_rows: int | None = None, rest: Callable[[float], None] = no_rest
) -> tuple[IdArray, VecArray]:
    """Every ``(ids, vectors)`` an index holds, reconstructed from its storage (exact recall checks).

    HNSW vectors are stored with the extra coordinate of the inner-product reduction, which is dropped; an
    IVF index gets a direct map on first use (built once, it does not change the inverted lists or search).
    With ``chunk_rows`` the vectors are reconstructed a chunk at a time, ``rest(busy_s)`` called after each.
    """
    import faiss

    if not isinstance(index, _FaissIndex) or len(index) == 0:
        return np.zeros(0, np.int64), np.zeros((0, index.dim), np.float32)
    outer = index._index
    inner: Any = faiss.downcast_index(outer.index)
    if isinstance(index, IvfIndex) and inner.direct_map.type == faiss.DirectMap.NoMap:  # type: ignore[attr-defined]
        inner.make_direct_map()
    n = int(inner.ntotal)
    step = n if chunk_rows is None else max(1, chunk_rows)
    vecs = np.empty((n, index.dim), np.float32)
    for start in range(0, n, step):
        began = time.perf_counter()
        stop = min(n, start + step)
        vecs[start:stop] = np.asarray(inner.reconstruct_n(start, stop - start), dtype=np.float32)[:, : index.dim]
        rest(time.perf_counter() - began)
    return faiss.vector_to_array(outer.id_map).astype(np.int64), vecs
