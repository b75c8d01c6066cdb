"""Ids held as positions: an id list that finds positions, and sequences that read their ids only when asked."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from state.space_ids import IdList, SpaceIds, ids_among

NAMES = [f"i{j}" for j in range(30)]


@settings(max_examples=200, deadline=None)
@given(st.lists(st.sampled_from(NAMES), max_size=40), st.lists(st.sampled_from(NAMES), max_size=20))
def test_an_id_list_finds_the_first_position_of_each_id_as_it_grows(first: list[str], more: list[str]) -> None:
    ids = IdList(first)
    for item in more[:5]:
        ids.append(item)
    ids.extend(more[5:])
    whole = first + more
    assert ids == whole
    assert ids.positions(NAMES).tolist() == [whole.index(i) if i in whole else -1 for i in NAMES]
    assert ids.missing(NAMES) == set(NAMES) - set(whole) and all((i in ids) == (i in whole) for i in NAMES)


@settings(max_examples=200, deadline=None)
@given(
    st.lists(st.sampled_from(NAMES), min_size=1, max_size=30, unique=True),
    st.data(),
    st.lists(st.sampled_from([*NAMES, "not-there"]), max_size=8),
)
def test_space_ids_read_index_and_match_like_the_list_of_their_ids(
    space_ids: list[str], data: st.DataObject, wanted: list[str]
) -> None:
    rows = data.draw(st.lists(st.integers(0, len(space_ids) - 1), max_size=25))
    plain = [space_ids[p] for p in rows]
    for space in (IdList(space_ids), list(space_ids)):  # by position, and by reading the ids
        ids = SpaceIds(space, np.array(rows, np.int64))
        assert ids == plain and list(ids) == plain and len(ids) == len(plain)
        assert [ids[j] for j in range(len(ids))] == plain and ids[1:4] == plain[1:4]
        pick = np.array([j for j in range(len(plain)) if j % 2 == 0], np.int64)
        assert ids.take(pick) == [plain[j] for j in pick.tolist()]
        assert ids_among(ids, wanted).tolist() == [i in wanted for i in plain]
    where = SpaceIds(IdList(space_ids), np.array(rows, np.int64)).index_in(list(dict.fromkeys(wanted)))
    distinct = list(dict.fromkeys(wanted))
    assert where is not None and where.tolist() == [distinct.index(i) if i in distinct else -1 for i in plain]


def test_space_ids_of_a_plain_list_cannot_match_by_position() -> None:
    assert SpaceIds(["a", "b"], np.array([1])).index_in(["b"]) is None
    assert SpaceIds(IdList(["a"]), np.zeros(0, np.int64)).index_in(["a"]).tolist() == []  # type: ignore[union-attr]
