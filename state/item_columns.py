"""A batch of item records as columns: what filters, hydration and ordering read for a thousand candidates at once."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import orjson

from state.errors import StateDecodeError
from state.items import ItemCounts, ItemRecord
from state.space_ids import take_ids
from streams.records import EVENT_TYPES

F64 = npt.NDArray[np.float64]
I64 = npt.NDArray[np.int64]
Mask = npt.NDArray[np.bool_]
_N = len(EVENT_TYPES)


@dataclass(frozen=True)
class ItemColumns:
    """Records of ``ids`` as aligned columns; ``known[j]`` is False where the catalog has no record.

    Unknown rows hold empty strings, zeros and ``available = False``. Indexing and iteration give the
    equivalent :class:`ItemRecord` (or None), so code written for lists of records reads it unchanged.

    >>> cols = ItemColumns.from_records(["a", "b"], [ItemRecord("a", "shoes", price=5.0), None])
    >>> cols.known.tolist(), cols.category, cols.price.tolist(), cols[1]
    ([True, False], ['shoes', ''], [5.0, 0.0], None)
    >>> cols.take([0]).records() == [ItemRecord("a", "shoes", price=5.0)]
    True
    """

    ids: Sequence[str]
    known: Mask
    category: list[str]
    brand: list[str]
    price: F64
    available: Mask
    created_at: F64
    counts: I64  # [N, len(EVENT_TYPES)]

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, j: int) -> ItemRecord | None:
        if not self.known[j]:
            return None
        counts = ItemCounts(tuple(int(c) for c in self.counts[j]))
        return ItemRecord(
            self.ids[j],
            self.category[j],
            self.brand[j],
            float(self.price[j]),
            bool(self.available[j]),
            float(self.created_at[j]),
            counts,
        )

    def __iter__(self) -> Iterator[ItemRecord | None]:
        return (self[j] for j in range(len(self)))

    def records(self) -> list[ItemRecord | None]:
        return list(self)

    @classmethod
    def empty(cls, ids: Sequence[str]) -> ItemColumns:
        """Every row unknown."""
        n = len(ids)
        z = np.zeros(n)
        return cls(
            ids, np.zeros(n, bool), [""] * n, [""] * n, z, np.zeros(n, bool), z.copy(), np.zeros((n, _N), np.int64)
        )

    @classmethod
    def from_records(cls, ids: Sequence[str], records: Sequence[ItemRecord | None]) -> ItemColumns:
        """Columns of ``records`` (aligned with ``ids``; None where unknown)."""
        n = len(records)
        if n != len(ids):
            raise ValueError(f"{len(ids)} ids for {n} records")
        known = np.fromiter((r is not None for r in records), bool, n)
        recs = [r if r is not None else _UNKNOWN for r in records]
        counts = np.array([r.counts.counts for r in recs], dtype=np.int64).reshape(n, _N)
        return cls(
            ids,
            known,
            [r.category for r in recs],
            [r.brand for r in recs],
            np.fromiter((r.price for r in recs), np.float64, n),
            np.fromiter((r.available for r in recs), bool, n) & known,
            np.fromiter((r.created_at for r in recs), np.float64, n),
            counts,
        )

    @classmethod
    def from_wire(cls, ids: Sequence[str], raw: Sequence[bytes | None], counts: I64) -> ItemColumns:
        """Columns from ``state.items.encode_item`` values (None: unknown) and ``counts`` ``[N, types]``.

        Records are parsed one ``orjson.loads`` each and transposed in C (``zip(*rows)``), never turned into
        objects. A corrupt or foreign-schema value raises :class:`StateDecodeError`.

        >>> from state.items import encode_item
        >>> raw = [encode_item(ItemRecord("a", "c", "b", 2.5, False, 7.0)), None]
        >>> cols = ItemColumns.from_wire(["a", "z"], raw, np.array([[1, 0, 0, 0, 3], [0] * 5]))
        >>> cols[0] == ItemRecord("a", "c", "b", 2.5, False, 7.0, ItemCounts((1, 0, 0, 0, 3))), cols[1]
        (True, None)
        """
        n = len(ids)
        present = [j for j, r in enumerate(raw) if r is not None]
        out = cls.empty(ids)
        if not present:
            return out
        try:
            rows = [orjson.loads(raw[j]) for j in present]  # type: ignore[arg-type]
            version, _, category, brand, price, available, created = zip(*rows, strict=True)
        except (orjson.JSONDecodeError, ValueError, TypeError) as exc:
            raise StateDecodeError(f"corrupt item record among {len(present)}: {exc}") from exc
        if set(version) != {1}:
            raise StateDecodeError(f"unknown item record schema {sorted(set(map(str, version)))}")
        at = np.asarray(present, np.int64)
        out.known[at] = True
        out.price[at] = np.asarray(price, np.float64)
        out.available[at] = np.asarray(available, bool)
        out.created_at[at] = np.asarray(created, np.float64)
        for j, c, b in zip(present, category, brand, strict=True):
            out.category[j], out.brand[j] = c, b
        return cls(
            out.ids,
            out.known,
            out.category,
            out.brand,
            out.price,
            out.available,
            out.created_at,
            np.where(out.known[:, None], np.asarray(counts, np.int64).reshape(n, _N), 0),
        )

    def take(self, rows: Sequence[int] | I64) -> ItemColumns:
        """The rows ``rows``, in that order."""
        idx = np.asarray(rows, dtype=np.int64)
        pick = idx.tolist()
        return ItemColumns(
            take_ids(self.ids, idx),
            self.known[idx],
            list(map(self.category.__getitem__, pick)),
            list(map(self.brand.__getitem__, pick)),
            self.price[idx],
            self.available[idx],
            self.created_at[idx],
            self.counts[idx],
        )

    def fill(self, rows: Sequence[int], other: ItemColumns) -> None:
        """Overwrite rows ``rows`` with ``other``'s rows (aligned), in place."""
        idx = np.asarray(rows, dtype=np.int64)
        self.known[idx], self.price[idx], self.available[idx] = other.known, other.price, other.available
        self.created_at[idx], self.counts[idx] = other.created_at, other.counts
        for src, j in enumerate(rows):
            self.category[j], self.brand[j] = other.category[src], other.brand[src]


_UNKNOWN = ItemRecord("", "")
