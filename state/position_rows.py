"""Memoised translation of positions in an index's id list to the rows of another table (catalog, vectors)."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import numpy.typing as npt

I64 = npt.NDArray[np.int64]
_UNSET = -2  # a position not translated yet


class PositionRows:
    """Rows of a table (``lookup``: ids -> rows, ``missing`` where the table lacks an id) for items known by
    their position in ``space`` (an id list that only grows, e.g. ``LiveIndex.item_ids``).

    The first request for a position asks ``lookup``; found rows are kept in an array indexed by position,
    so later requests gather them without touching a dictionary of a million strings. Items without a
    position (-1) are always looked up. ``generation`` tells when the table may have moved an id to another
    row (a deletion): the memo is then forgotten. A different ``space`` object also starts a fresh memo.

    >>> table = {"a": 0, "b": 1}
    >>> calls = []
    >>> def lookup(ids):
    ...     calls.append(list(ids))
    ...     return np.array([table.get(i, -1) for i in ids], np.int64)
    >>> memo, space = PositionRows(lookup, missing=-1), ["b", "zz", "a"]
    >>> memo.rows(["a", "zz", "q"], np.array([2, 1, -1]), space).tolist()
    [0, -1, -1]
    >>> memo.rows(["a", "b"], np.array([2, 0]), space).tolist(), calls[-1]
    ([0, 1], ['b'])
    """

    def __init__(
        self, lookup: Callable[[Sequence[str]], I64], *, missing: int, generation: Callable[[], int] = lambda: 0
    ) -> None:
        self.lookup, self.missing, self.generation = lookup, missing, generation
        self._space: Sequence[str] | None = None
        self._seen = -1
        self._memo = np.zeros(0, np.int64)

    def rows(self, item_ids: Sequence[str], positions: I64, space: Sequence[str] | None) -> I64:
        """Row of each of ``item_ids``; ``positions[j]`` is its position in ``space`` or -1 when unknown."""
        if space is None or not len(item_ids):
            return self.lookup(item_ids)
        self._check(space)
        pos = np.asarray(positions, np.int64)
        self._reserve(pos, space)
        out = np.where(pos >= 0, self._memo[np.maximum(pos, 0)], _UNSET)
        ask = np.flatnonzero(out == _UNSET)
        if ask.size:
            got = np.asarray(self.lookup([item_ids[j] for j in ask.tolist()]), np.int64)
            out[ask] = got
            keep = (pos[ask] >= 0) & (got != self.missing)  # an id the table lacks may arrive later
            self._memo[pos[ask][keep]] = got[keep]
        return out

    def learn(self, space: Sequence[str], positions: I64, rows: I64) -> None:
        """Record rows found elsewhere (e.g. as the table gains items) for positions in ``space`` (-1: skipped).

        >>> memo, space = PositionRows(lambda ids: np.full(len(ids), -1, np.int64), missing=-1), ["a", "b"]
        >>> memo.learn(space, np.array([1, -1]), np.array([7, 3]))
        >>> memo.rows(["b"], np.array([1]), space).tolist()
        [7]
        """
        self._check(space)
        pos, got = np.asarray(positions, np.int64), np.asarray(rows, np.int64)
        keep = (pos >= 0) & (got != self.missing)
        self._reserve(pos, space)
        self._memo[pos[keep]] = got[keep]

    def _reserve(self, positions: I64, space: Sequence[str]) -> None:
        """Grow the memo to hold every position of ``positions`` (and of ``space``), with room to spare."""
        top = int(positions.max()) if positions.size else -1
        if top >= self._memo.shape[0]:
            size = max(top + 1, len(space)) + 1024
            self._memo = np.concatenate([self._memo, np.full(size - len(self._memo), _UNSET)])

    def seed(self, space: Sequence[str]) -> None:
        """Translate every position of ``space`` now (one pass at start-up instead of misses on the hot path)."""
        self._check(space)
        got = np.asarray(self.lookup(space), np.int64)
        self._memo[: len(got)] = np.where(got != self.missing, got, _UNSET)

    def _check(self, space: Sequence[str]) -> None:
        gen = self.generation()
        if space is not self._space or gen != self._seen:
            self._space, self._seen = space, gen
            self._memo = np.full(len(space) + 1024, _UNSET, np.int64)
