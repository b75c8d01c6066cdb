"""Item embeddings by item id, for the two-tower feature (dot products) and for MMR (cosine similarity)."""

from __future__ import annotations

from collections.abc import Sequence
from itertools import repeat

import numpy as np
import numpy.typing as npt

from streams.errors import ConfigError

F32 = npt.NDArray[np.float32]
Mask = npt.NDArray[np.bool_]


class ItemVectors:
    """Row ``i`` of ``vectors`` is the embedding of ``ids[i]`` (the same vectors the ANN index holds).

    >>> iv = ItemVectors(("a", "b"), np.array([[3.0, 4.0], [0.0, 2.0]], dtype=np.float32))
    >>> vecs, found = iv.lookup(["b", "zz"])
    >>> vecs.tolist(), found.tolist()
    ([[0.0, 2.0], [0.0, 0.0]], [True, False])
    >>> iv.unit[0].tolist()
    [0.6000000238418579, 0.800000011920929]
    """

    def __init__(self, ids: Sequence[str], vectors: npt.ArrayLike) -> None:
        vecs = np.ascontiguousarray(vectors, dtype=np.float32)
        if vecs.ndim != 2 or vecs.shape[0] != len(ids):
            raise ConfigError(f"item vectors: {len(ids)} ids for an array of shape {list(vecs.shape)}")
        self.ids = tuple(ids)
        self.row = {item: i for i, item in enumerate(self.ids)}
        # one zero row at the end stands for unknown items, so lookups are a single fancy-index
        self.vectors = np.vstack([vecs, np.zeros((1, vecs.shape[1]), np.float32)])
        norms = np.linalg.norm(self.vectors, axis=1, keepdims=True)
        self.unit = (self.vectors / np.maximum(norms, 1e-12)).astype(np.float32)

    @property
    def dim(self) -> int:
        return int(self.vectors.shape[1])

    def rows(self, item_ids: Sequence[str]) -> npt.NDArray[np.int64]:
        """Row of each id; unknown ids map to the zero row (``len(self.ids)``)."""
        missing = len(self.ids)
        return np.fromiter(map(self.row.get, item_ids, repeat(missing)), dtype=np.int64, count=len(item_ids))

    def lookup(self, item_ids: Sequence[str], unit: bool = False) -> tuple[F32, Mask]:
        """Embeddings of ``item_ids`` (zeros where unknown) and which ones were found."""
        return self.take(self.rows(item_ids), unit)

    def take(self, rows: npt.NDArray[np.int64], unit: bool = False) -> tuple[F32, Mask]:
        """Embeddings (unit length when ``unit``) of rows from :meth:`rows`, and which are real items."""
        table = self.unit if unit else self.vectors
        return table[rows], rows < len(self.ids)


I64 = npt.NDArray[np.int64]


def session_dots(vectors: ItemVectors | None, rows: I64 | None, user_vec: F32 | None) -> tuple[F32 | None, Mask | None]:
    """Dot products of ``user_vec`` with the item vectors at ``rows`` and which rows were found; (None, None)
    without vectors, rows or a session vector of the version's width."""
    if vectors is None or rows is None or user_vec is None or user_vec.shape[0] != vectors.dim:
        return None, None
    vecs, found = vectors.take(rows)
    return (vecs @ user_vec).astype(np.float32), found


def two_tower_values(
    vectors: ItemVectors | None, rows: I64 | None, user_vec: F32 | None
) -> npt.NDArray[np.float64] | None:
    """The two-tower score of each candidate (items the version lacks rank below all others), or None."""
    dots, found = session_dots(vectors, rows, user_vec)
    if dots is None or found is None or not found.any():
        return None
    values = dots.astype(np.float64)
    values[~found] = float(values[found].min()) - 1.0  # finite, so MMR's scaling stays defined
    return values
