"""PositionRows: positions in an index's id list translated to table rows, memoised, never stale."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from state.catalog_table import CatalogTable
from state.items import ItemRecord
from state.position_rows import PositionRows


def _counting(table: CatalogTable, calls: list[list[str]]) -> PositionRows:
    def lookup(ids: Sequence[str]) -> np.ndarray:
        calls.append(list(ids))
        return table.rows(ids)

    return PositionRows(lookup, missing=-1, generation=lambda: table.generation)


def _table(*ids: str) -> CatalogTable:
    table = CatalogTable()
    for i in ids:
        table[i] = ItemRecord(i, "c")
    return table


def test_memo_answers_like_the_table_and_asks_each_position_once() -> None:
    table = _table(*("x", "y", "z"))
    space = ["z", "y", "x", "new"]
    calls: list[list[str]] = []
    memo = _counting(table, calls)
    ids, pos = ["x", "new", "q", "z"], np.array([2, 3, -1, 0])
    assert memo.rows(ids, pos, space).tolist() == table.rows(ids).tolist() == [0, -1, -1, 2]
    assert memo.rows(ids, pos, space).tolist() == [0, -1, -1, 2]
    assert calls[1] == ["new", "q"]  # found rows are memoised; unknown ids and unpositioned ones are asked again
    table["new"] = ItemRecord("new", "c")
    assert memo.rows(ids, pos, space).tolist() == [0, 3, -1, 2]


def test_a_deletion_or_another_space_forgets_the_memo() -> None:
    table = _table(*("a", "b"))
    space = ["a", "b"]
    memo = _counting(table, [])
    assert memo.rows(["b"], np.array([1]), space).tolist() == [1]
    del table["b"]
    table["b"] = ItemRecord("b", "c")  # a new row
    assert memo.rows(["b"], np.array([1]), space).tolist() == table.rows(["b"]).tolist() == [2]
    other = ["b", "a"]
    assert memo.rows(["b", "a"], np.array([0, 1]), other).tolist() == [2, 0]


def test_positions_beyond_the_memo_grow_it() -> None:
    table = CatalogTable()
    space: list[str] = []
    memo = _counting(table, [])
    assert memo.rows([], np.zeros(0, np.int64), space).tolist() == []
    for j in range(3000):
        space.append(f"i{j}")
        table[f"i{j}"] = ItemRecord(f"i{j}", "c")
    ids = ["i2999", "i5"]
    assert memo.rows(ids, np.array([2999, 5]), space).tolist() == [2999, 5]
    assert memo.rows(ids, np.array([2999, 5]), None).tolist() == [2999, 5]


def test_a_seeded_memo_never_asks_for_the_positions_it_was_seeded_with() -> None:
    table = CatalogTable()
    space = [f"i{j}" for j in range(50)]
    for i in space[::2]:
        table[i] = ItemRecord(i, "c")
    calls: list[list[str]] = []
    memo = _counting(table, calls)
    memo.seed(space)
    pos = np.array([0, 2, 48])
    assert memo.rows([space[p] for p in pos], pos, space).tolist() == [0, 1, 24]
    assert len(calls) == 1
    assert memo.rows(["i1"], np.array([1]), space).tolist() == [-1] and calls[-1] == ["i1"]  # unknown: asked


def test_learnt_rows_are_never_asked_and_a_deletion_forgets_them() -> None:
    table = _table(*("a", "b", "c"))
    space = ["c", "b", "a", "later"]
    calls: list[list[str]] = []
    memo = _counting(table, calls)
    ids = ["a", "c", "later"]
    memo.learn(space, np.array([2, 0, 3, -1]), np.array([0, 2, -1, 1]))  # "later" is not in the table: not learnt
    assert memo.rows(ids, np.array([2, 0, 3]), space).tolist() == [0, 2, -1]
    assert calls == [["later"]]
    del table["b"]  # rows may move: what was learnt is forgotten and asked again
    assert memo.rows(ids, np.array([2, 0, 3]), space).tolist() == [0, 2, -1] and calls[-1] == ids
