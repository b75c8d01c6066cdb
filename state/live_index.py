"""A served version's ANN index that new catalog items join in place, without a rebuild."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np
import numpy.typing as npt

from models.errors import AnnError
from state.ann import AnnIndex, VecArray
from state.space_ids import IdList


class LiveIndex:
    """The version's index plus its id list, grown by :meth:`add`; ``item_ids`` is shared by reference.

    Index ids are positions in ``item_ids``: the version's items keep theirs, a new item takes the next
    free position, so searches (``AnnSource``) map ids back through the same, growing list.
    ``cursor`` is when the last catalog-log poll started, by this worker's clock, and ``looked_back`` when
    the last poll that read behind it started (see ``agents.new_items``).

    >>> from state.ann import ExactIndex
    >>> live = LiveIndex(ExactIndex(2), [])
    >>> live.add(["a", "b", "a"], np.eye(3, 2, dtype=np.float32))
    2
    >>> live.item_ids, "b" in live, len(live.index), live.missing(["b", "c"]), live.positions(["b", "c"]).tolist()
    (['a', 'b'], True, 2, {'c'}, [1, -1])
    """

    def __init__(self, index: AnnIndex, item_ids: Sequence[str]) -> None:
        if len(index) != len(item_ids):
            raise AnnError(f"live index: {len(index)} vectors but {len(item_ids)} item ids")
        self.index = index
        self.item_ids = IdList(item_ids)  # knows each id's position: no second dictionary of a million ids
        self.cursor = float("-inf")
        self.looked_back = float("-inf")

    def __contains__(self, item_id: object) -> bool:
        return item_id in self.item_ids

    def missing(self, item_ids: Iterable[str]) -> set[str]:
        """The ids of ``item_ids`` not indexed (one set difference, no per-id call)."""
        return self.item_ids.missing(item_ids)

    def __len__(self) -> int:
        return len(self.item_ids)

    def positions(self, item_ids: Sequence[str]) -> npt.NDArray[np.int64]:
        """Position of each id in :attr:`item_ids` (its index id), -1 where it is not indexed."""
        return self.item_ids.positions(item_ids)

    def add(self, item_ids: Sequence[str], vectors: VecArray) -> int:
        """Index the ids not indexed yet (first occurrence wins) under fresh ids; return how many were added."""
        if len(item_ids) != len(vectors):
            raise AnnError(f"live index add: {len(item_ids)} ids for {len(vectors)} vectors")
        rows: list[int] = []
        new: list[str] = []
        taken: set[str] = set()
        for j, item in enumerate(item_ids):
            if item not in self.item_ids and item not in taken:
                taken.add(item)
                rows.append(j)
                new.append(item)
        if not new:
            return 0
        start = len(self.item_ids)
        ids = np.arange(start, start + len(new), dtype=np.int64)
        self.index.add(ids, np.asarray(vectors, dtype=np.float32)[rows])  # validates before anything changes
        self.item_ids.extend(new)
        return len(new)
