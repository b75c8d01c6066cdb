"""Item ids as positions in an index's id list: a thousand candidates are carried as integers, not strings.

Over a million-item catalog every read of an id string is a cache miss (the strings lie scattered over
hundreds of megabytes), and a request that builds, hashes or copies lists of a thousand ids pays for it
several times over. :class:`IdList` is an index's growing id list that finds positions itself;
:class:`SpaceIds` is a sequence of ids held as positions in one, read as strings only when asked.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from itertools import repeat
from typing import SupportsIndex, overload

import numpy as np
import numpy.typing as npt

I64 = npt.NDArray[np.int64]


class IdList(list[str]):
    """An append-only id list that knows where each id sits (the first position of a repeated id).

    Only :meth:`append` and :meth:`extend` may change it: the positions are kept by them.

    >>> ids = IdList(["a", "b"])
    >>> ids.extend(["c", "a"])
    >>> ids.positions(["c", "zz", "a"]).tolist(), ids == ["a", "b", "c", "a"], "c" in ids
    ([2, -1, 0], True, True)
    """

    __slots__ = ("_at",)

    def __init__(self, ids: Iterable[str] = ()) -> None:
        super().__init__()
        self._at: dict[str, int] = {}
        self.extend(ids)

    def append(self, item_id: str) -> None:
        self._at.setdefault(item_id, len(self))
        super().append(item_id)

    def extend(self, item_ids: Iterable[str]) -> None:
        start = len(self)
        new = list(item_ids)
        super().extend(new)
        for k, item in enumerate(new):
            self._at.setdefault(item, start + k)

    def __contains__(self, item_id: object) -> bool:
        return item_id in self._at

    def missing(self, item_ids: Iterable[str]) -> set[str]:
        """The ids of ``item_ids`` not in the list (one set difference)."""
        return set(item_ids).difference(self._at)

    def positions(self, item_ids: Sequence[str]) -> I64:
        """Position of each of ``item_ids``, -1 where it is not in the list."""
        return np.fromiter(map(self._at.get, item_ids, repeat(-1)), np.int64, len(item_ids))


class SpaceIds(Sequence[str]):
    """The ids at ``positions`` (all valid) of ``space``, read from it only when indexed or iterated.

    Compares equal to any sequence of the same ids. :meth:`take` keeps positions; :meth:`index_in` finds
    a few ids without reading the others (by position when ``space`` is an :class:`IdList`).

    >>> space = IdList(["a", "b", "c"])
    >>> ids = SpaceIds(space, np.array([2, 0]))
    >>> ids == ["c", "a"], ids[1], ids.take(np.array([1])) == ["a"], ids[:1] == ["c"]
    (True, 'a', True, True)
    """

    __slots__ = ("positions", "space")

    def __init__(self, space: Sequence[str], positions: I64) -> None:
        self.space, self.positions = space, positions

    def __len__(self) -> int:
        return len(self.positions)

    @overload
    def __getitem__(self, j: SupportsIndex) -> str: ...

    @overload
    def __getitem__(self, j: slice) -> SpaceIds: ...

    def __getitem__(self, j: SupportsIndex | slice) -> str | SpaceIds:
        if isinstance(j, slice):
            return SpaceIds(self.space, self.positions[j])
        return self.space[int(self.positions[j])]

    def __iter__(self) -> Iterator[str]:
        return map(self.space.__getitem__, self.positions.tolist())

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Sequence) and len(other) == len(self) and list(self) == list(other)

    __hash__ = None  # type: ignore[assignment]  # compares by content, like a list

    def __repr__(self) -> str:
        return f"SpaceIds({list(self)!r})"

    def take(self, rows: I64) -> SpaceIds:
        """The ids at ``rows`` of this sequence, in that order."""
        return SpaceIds(self.space, self.positions[rows])

    def index_in(self, wanted: Sequence[str]) -> I64 | None:
        """For each id here, where it is in ``wanted`` (a few distinct ids), or -1; None unless ``space`` is an
        :class:`IdList` (the ids are then matched by position, without reading the others).

        >>> SpaceIds(IdList(["a", "b", "c"]), np.array([2, 0, 1])).index_in(["b", "q", "c"]).tolist()
        [2, -1, 0]
        """
        if not isinstance(self.space, IdList):
            return None
        found = self.space.positions(wanted)
        ok = np.flatnonzero(found >= 0)
        if not ok.size:
            return np.full(len(self), -1, np.int64)
        by_pos = ok[np.argsort(found[ok])]  # indices into ``wanted``, sorted by their positions
        sorted_pos = found[by_pos]
        at = np.minimum(np.searchsorted(sorted_pos, self.positions), len(sorted_pos) - 1)
        return np.where(sorted_pos[at] == self.positions, by_pos[at], -1)


def take_ids(item_ids: Sequence[str], rows: I64) -> Sequence[str]:
    """The ids at ``rows`` of ``item_ids``, still as positions for :class:`SpaceIds`.

    >>> take_ids(["a", "b", "c"], np.array([2, 0])), take_ids(SpaceIds(["a", "b"], np.array([1, 0])), np.array([1]))
    (['c', 'a'], SpaceIds(['a']))
    """
    if isinstance(item_ids, SpaceIds):
        return item_ids.take(rows)
    return list(map(item_ids.__getitem__, rows.tolist()))


def ids_among(item_ids: Sequence[str], wanted: Iterable[str]) -> npt.NDArray[np.bool_]:
    """Whether each of ``item_ids`` is one of ``wanted`` (by position for :class:`SpaceIds` of an IdList).

    >>> ids_among(["a", "b"], {"b"}).tolist(), ids_among(SpaceIds(IdList("abc"), np.array([1, 2])), ["c"]).tolist()
    ([False, True], [False, True])
    """
    wanted = list(dict.fromkeys(wanted))
    where = item_ids.index_in(wanted) if isinstance(item_ids, SpaceIds) else None
    if where is not None:
        return where >= 0
    members = set(wanted)
    return np.fromiter(map(members.__contains__, item_ids), np.bool_, len(item_ids))
