"""Item embeddings by item id, for the two-tower feature (dot products) and for MMR (cosine similarity)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from itertools import repeat

import numpy as np
import numpy.typing as npt

from streams.errors import ConfigError

F32 = npt.NDArray[np.float32]
Mask = npt.NDArray[np.bool_]
I64 = npt.NDArray[np.int64]


@dataclass(frozen=True, slots=True)
class Gathered:
    """The item vectors of some rows, gathered once per request for the two-tower feature and for MMR."""

    vecs: F32
    found: Mask  # which rows are real items (the others read the zero row)
    inv_norm: F32  # 1 / length of each vector (the zero row: a large finite number, times zeros)

    def unit(self) -> F32:
        """The vectors scaled to unit length (zeros stay zeros)."""
        return self.vecs * self.inv_norm[:, None]

    def dots(self, user_vec: F32 | None) -> F32 | None:
        """Dot products with ``user_vec``; None without one or with one of another width."""
        if user_vec is None or user_vec.shape[0] != self.vecs.shape[1]:
            return None
        return (self.vecs @ user_vec).astype(np.float32)


class ItemVectors:
    """Row ``i`` of ``vectors`` is the embedding of ``ids[i]`` (the same vectors the ANN index holds).

    >>> iv = ItemVectors(("a", "b"), np.array([[3.0, 4.0], [0.0, 2.0]], dtype=np.float32))
    >>> vecs, found = iv.lookup(["b", "zz"])
    >>> vecs.tolist(), found.tolist()
    ([[0.0, 2.0], [0.0, 0.0]], [True, False])
    >>> iv.take(np.array([0, 2]), unit=True)[0].tolist()
    [[0.6000000238418579, 0.800000011920929], [0.0, 0.0]]
    """

    def __init__(self, ids: Sequence[str], vectors: npt.ArrayLike) -> None:
        vecs = np.ascontiguousarray(vectors, dtype=np.float32)
        if vecs.ndim != 2 or vecs.shape[0] != len(ids):
            raise ConfigError(f"item vectors: {len(ids)} ids for an array of shape {list(vecs.shape)}")
        self.ids = tuple(ids)
        self.row = {item: i for i, item in enumerate(self.ids)}
        # one zero row at the end stands for unknown items, so lookups are a single fancy-index
        self.vectors = np.vstack([vecs, np.zeros((1, vecs.shape[1]), np.float32)])
        # unit vectors are scaled on demand from the rows a request gathers: no second million-row table
        self.inv_norm = (1.0 / np.maximum(np.linalg.norm(self.vectors, axis=1), 1e-12)).astype(np.float32)

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

    def take(self, rows: I64, unit: bool = False) -> tuple[F32, Mask]:
        """Embeddings (unit length when ``unit``) of rows from :meth:`rows`, and which are real items."""
        got = self.gather(rows)
        return got.unit() if unit else got.vecs, got.found

    def gather(self, rows: I64) -> Gathered:
        """The vectors of rows from :meth:`rows` (one random-access gather; unit vectors derive from it)."""
        return Gathered(self.vectors[rows], rows < len(self.ids), self.inv_norm[rows])


def session_dots(vectors: ItemVectors | None, rows: I64 | None, user_vec: F32 | None) -> tuple[F32 | None, Mask | None]:
    """Dot products of ``user_vec`` with the item vectors at ``rows`` and which rows were found; (None, None)
    without vectors, rows or a session vector of the version's width."""
    return gathered_dots(vectors.gather(rows) if vectors is not None and rows is not None else None, user_vec)


def gathered_dots(got: Gathered | None, user_vec: F32 | None) -> tuple[F32 | None, Mask | None]:
    """:func:`session_dots` of vectors gathered already."""
    dots = got.dots(user_vec) if got is not None else None
    return (dots, got.found) if dots is not None and got is not None else (None, None)


def two_tower_values(got: Gathered | None, user_vec: F32 | None) -> npt.NDArray[np.float64] | None:
    """The two-tower score of each candidate (items the version lacks rank below all others), or None."""
    dots, found = gathered_dots(got, user_vec)
    if dots is None or found is None or not found.any():
        return None
    values = dots.astype(np.float64)
    values[~found] = float(values[found].min()) - 1.0  # finite, so MMR's scaling stays defined
    return values
