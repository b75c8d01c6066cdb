"""The columnar local catalog behaves like a dict of item records and gathers the same columns."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from state.catalog_table import CatalogTable
from state.item_columns import ItemColumns
from state.items import ItemCounts, ItemRecord

ids = st.sampled_from([f"i{j}" for j in range(12)])
records = st.builds(
    ItemRecord,
    item_id=ids,
    category=st.sampled_from(["shoes", "bags"]),
    brand=st.sampled_from(["", "acme"]),
    price=st.floats(0, 1e6, allow_nan=False),
    available=st.booleans(),
    created_at=st.floats(0, 2e9, allow_nan=False),
    counts=st.builds(ItemCounts, st.tuples(*[st.integers(0, 10**6)] * 5)),
)


@settings(max_examples=100, deadline=None)
@given(st.lists(st.one_of(records, ids), max_size=60), st.lists(ids, max_size=20))
def test_table_matches_a_dict_of_records(ops: list[ItemRecord | str], asked: list[str]) -> None:
    table, ref = CatalogTable(capacity=2), {}  # a tiny capacity: growth is exercised
    for op in ops:
        if isinstance(op, str):  # a bare id deletes the item
            table.pop(op, None)
            ref.pop(op, None)
        else:
            table[op.item_id] = ref[op.item_id] = op
    assert dict(table.items()) == ref and len(table) == len(ref)
    assert table.columns(asked).records() == ItemColumns.from_records(asked, [ref.get(i) for i in asked]).records()
