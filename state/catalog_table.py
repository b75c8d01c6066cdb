"""The worker's local catalog as growable columns: a mapping of item records that gathers a thousand at once."""

from __future__ import annotations

import sys
from collections.abc import Iterator, MutableMapping, Sequence
from itertools import repeat

import numpy as np
import numpy.typing as npt

from state.item_columns import ItemColumns
from state.items import ItemCounts, ItemRecord
from streams.records import EVENT_TYPES

_N = len(EVENT_TYPES)


class CatalogTable(MutableMapping[str, ItemRecord]):
    """Item records kept as numpy columns plus an id -> row index; reads like ``dict[str, ItemRecord]``.

    :meth:`columns` answers a candidate list with one dictionary lookup per id and numpy gathers, with no
    record object built; a million items take tens of megabytes instead of the hundreds a dict of records
    does. Deleting an item frees its id (its row stays, unreachable).

    >>> t = CatalogTable()
    >>> t["a"] = ItemRecord("a", "shoes", price=5.0)
    >>> t["b"] = ItemRecord("b", "bags", available=False)
    >>> t["a"] = ItemRecord("a", "shoes", price=6.0)  # an upsert overwrites the row
    >>> len(t), t["a"].price, t.get("zz")
    (2, 6.0, None)
    >>> cols = t.columns(["b", "zz", "a"])
    >>> cols.known.tolist(), cols.category, cols.price.tolist()
    ([True, False, True], ['bags', '', 'shoes'], [0.0, 0.0, 6.0])
    """

    def __init__(self, capacity: int = 1024) -> None:
        self._row: dict[str, int] = {}
        self._ids: list[str] = []
        self._category: list[str] = []
        self._brand: list[str] = []
        self._price = np.zeros(capacity)
        self._available = np.zeros(capacity, bool)
        self._created = np.zeros(capacity)
        self._counts = np.zeros((capacity, _N), np.int64)
        self.generation = 0  # bumped by every deletion: the only change that moves an id to another row

    def __len__(self) -> int:
        return len(self._row)

    def __iter__(self) -> Iterator[str]:
        return iter(self._row)

    def __contains__(self, item_id: object) -> bool:
        return item_id in self._row

    def __getitem__(self, item_id: str) -> ItemRecord:
        j = self._row[item_id]
        return ItemRecord(
            item_id,
            self._category[j],
            self._brand[j],
            float(self._price[j]),
            bool(self._available[j]),
            float(self._created[j]),
            ItemCounts(tuple(int(c) for c in self._counts[j])),
        )

    def __setitem__(self, item_id: str, rec: ItemRecord) -> None:
        j = self._row.get(item_id)
        if j is None:
            j = len(self._ids)
            if j == self._price.shape[0]:
                self._grow(2 * j)
            self._row[item_id] = j
            self._ids.append(item_id)
            self._category.append(sys.intern(rec.category))  # a few dozen distinct strings, a million rows
            self._brand.append(sys.intern(rec.brand))
        else:
            self._category[j], self._brand[j] = sys.intern(rec.category), sys.intern(rec.brand)
        self._price[j], self._available[j], self._created[j] = rec.price, rec.available, rec.created_at
        self._counts[j] = rec.counts.counts

    def __delitem__(self, item_id: str) -> None:
        del self._row[item_id]
        self.generation += 1

    def _grow(self, capacity: int) -> None:
        self._price = np.resize(self._price, capacity)
        self._available = np.resize(self._available, capacity)
        self._created = np.resize(self._created, capacity)
        self._counts = np.resize(self._counts, (capacity, _N))

    def columns(self, item_ids: Sequence[str]) -> ItemColumns:
        """Records of ``item_ids`` as columns; ids not in the table are unknown rows."""
        if not self._ids:
            return ItemColumns.empty(item_ids)
        return self.columns_at(item_ids, self.rows(item_ids))

    def rows(self, item_ids: Sequence[str]) -> npt.NDArray[np.int64]:
        """Row of each id, -1 where the table lacks it (rows stay valid until :attr:`generation` changes)."""
        return np.fromiter(map(self._row.get, item_ids, repeat(-1)), np.int64, len(item_ids))

    def columns_at(self, item_ids: Sequence[str], rows: npt.NDArray[np.int64]) -> ItemColumns:
        """Columns of ``item_ids`` whose rows (from :meth:`rows`, -1: unknown) are already known."""
        if not self._ids:
            return ItemColumns.empty(item_ids)
        known = rows >= 0
        at = np.where(known, rows, 0)
        pick = at.tolist()
        category, brand = list(map(self._category.__getitem__, pick)), list(map(self._brand.__getitem__, pick))
        for j in np.flatnonzero(~known).tolist():
            category[j] = brand[j] = ""
        return ItemColumns(
            item_ids,
            known,
            category,
            brand,
            np.where(known, self._price[at], 0.0),
            known & self._available[at],
            np.where(known, self._created[at], 0.0),
            np.where(known[:, None], self._counts[at], 0),
        )

    def nbytes(self) -> int:
        """Bytes held by the numeric columns (the strings and the index come on top)."""
        arrays: list[npt.NDArray[np.generic]] = [self._price, self._available, self._created, self._counts]
        return sum(int(a.nbytes) for a in arrays)
