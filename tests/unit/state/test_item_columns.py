"""Item records as columns: the wire decode, take and fill agree with the record-at-a-time code."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from state.errors import StateDecodeError
from state.item_columns import ItemColumns
from state.items import ItemCounts, ItemRecord, decode_item, encode_item

records = st.builds(
    ItemRecord,
    item_id=st.text(min_size=1, max_size=8),
    category=st.sampled_from(["shoes", "bags", ""]),
    brand=st.sampled_from(["", "acme"]),
    price=st.floats(0, 1e6, allow_nan=False),
    available=st.booleans(),
    created_at=st.floats(0, 2e9, allow_nan=False),
    counts=st.builds(ItemCounts, st.tuples(*[st.integers(0, 10**9)] * 5)),
)


@settings(max_examples=100, deadline=None)
@given(st.lists(st.one_of(st.none(), records), max_size=30))
def test_wire_columns_give_back_the_records(recs: list[ItemRecord | None]) -> None:
    ids = [r.item_id if r is not None else f"missing{j}" for j, r in enumerate(recs)]
    raw = [encode_item(r) if r is not None else None for r in recs]
    counts = np.array([r.counts.counts if r is not None else (7,) * 5 for r in recs], np.int64).reshape(-1, 5)
    cols = ItemColumns.from_wire(ids, raw, counts)
    want = [
        decode_item(w, r.counts) if w is not None and r is not None else None for w, r in zip(raw, recs, strict=True)
    ]
    assert cols.records() == want == recs
    assert cols.records() == ItemColumns.from_records(ids, recs).records()
    assert not cols.available[~cols.known].any() and not cols.counts[~cols.known].any()


def test_take_and_fill_move_whole_rows() -> None:
    a = ItemRecord("a", "shoes", "x", 5.0, True, 1.0, ItemCounts((1, 2, 3, 4, 5)))
    b = ItemRecord("b", "bags", price=7.0, available=False)
    cols = ItemColumns.from_records(["a", "b", "c"], [a, b, None])
    assert cols.take([2, 0]).records() == [None, a]
    blank = ItemColumns.empty(["a", "b", "c"])
    blank.fill([2, 0], ItemColumns.from_records(["c", "a"], [None, a]))
    assert blank.records() == [a, None, None]
    with pytest.raises(ValueError, match="2 ids for 3 records"):
        ItemColumns.from_records(["a", "b"], [a, b, None])


def test_corrupt_or_foreign_wire_records_raise() -> None:
    with pytest.raises(StateDecodeError, match="corrupt"):
        ItemColumns.from_wire(["a"], [b"{not json"], np.zeros((1, 5), np.int64))
    with pytest.raises(StateDecodeError, match="schema"):
        ItemColumns.from_wire(["a"], [b'[2,"a","c","",1.0,true,0.0]'], np.zeros((1, 5), np.int64))
