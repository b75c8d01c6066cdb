"""The worker's local catalog as growable columns: a mapping of item records that gathers a thousand at once."""

from __future__ import annotations

from collections.abc import Iterator, MutableMapping, Sequence
from itertools import repeat

import numpy as np
import numpy.typing as npt

from state.item_columns import ItemColumns
from state.items import ItemCounts, ItemRecord
from streams.records import EVENT_TYPES

_N = len(EVENT_TYPES)
_PRICE, _AVAILABLE, _CREATED, _CATEGORY, _BRAND, _COUNTS = range(6)  # columns of the numeric block


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
        # one row of numbers per item, so a candidate list is one gather: price, available, created_at,
        # category and brand codes (into ``_words``), then the counters; every value is exact in float64
        self._num = np.zeros((capacity, _COUNTS + _N))
        self._words: list[str] = [""]  # code 0 is the empty string: what unknown rows read
        self._word_code: dict[str, int] = {"": 0}
        self._word_array = np.array(self._words, dtype=object)
        self.generation = 0  # bumped by every deletion: the only change that moves an id to another row

    def __len__(self) -> int:
        return len(self._row)

    def __iter__(self) -> Iterator[str]:
        return iter(self._row)

    def __contains__(self, item_id: object) -> bool:
        return item_id in self._row

    def __getitem__(self, item_id: str) -> ItemRecord:
        row = self._num[self._row[item_id]]
        return ItemRecord(
            item_id,
            self._words[int(row[_CATEGORY])],
            self._words[int(row[_BRAND])],
            float(row[_PRICE]),
            bool(row[_AVAILABLE]),
            float(row[_CREATED]),
            ItemCounts(tuple(int(c) for c in row[_COUNTS:])),
        )

    def __setitem__(self, item_id: str, rec: ItemRecord) -> None:
        j = self._row.get(item_id)
        if j is None:
            j = len(self._ids)
            if j == self._num.shape[0]:
                self._num = np.resize(self._num, (2 * j, self._num.shape[1]))
            self._row[item_id] = j
            self._ids.append(item_id)
        words = (self._code(rec.category), self._code(rec.brand))
        self._num[j] = (rec.price, rec.available, rec.created_at, *words, *rec.counts.counts)

    def _code(self, word: str) -> int:
        code = self._word_code.get(word)
        if code is None:  # a few dozen categories and some thousands of brands, a million rows
            code = self._word_code[word] = len(self._words)
            self._words.append(word)
            self._word_array = np.array(self._words, dtype=object)
        return code

    def __delitem__(self, item_id: str) -> None:
        del self._row[item_id]
        self.generation += 1

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
        block = self._num[np.where(known, rows, 0)]
        block[~known] = 0.0  # unknown rows: zeros, not available, empty strings (code 0)
        words = self._word_array[block[:, _CATEGORY : _BRAND + 1].astype(np.int64)]
        return ItemColumns(
            item_ids,
            known,
            words[:, 0].tolist(),
            words[:, 1].tolist(),
            block[:, _PRICE],
            block[:, _AVAILABLE] != 0.0,
            block[:, _CREATED],
            block[:, _COUNTS:].astype(np.int64),
        )

    def nbytes(self) -> int:
        """Bytes held by the numeric columns (the strings and the index come on top)."""
        return int(self._num.nbytes)
