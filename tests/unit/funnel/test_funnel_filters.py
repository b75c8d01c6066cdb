"""Hard filters: nothing excluded, blocked, unavailable or purchased ever passes, and every drop is counted."""

from __future__ import annotations

from funnel_world import user_state
from hypothesis import given, settings
from hypothesis import strategies as st

from agents.funnel.candidates import Candidate
from agents.funnel.filters import Constraints, FilterConfig, apply_filters
from state.items import ItemRecord

IDS = [f"i{j}" for j in range(12)]


def _cands(ids: list[str]) -> list[Candidate]:
    return [Candidate(i, ("popular",), (n,), 1.0 / (n + 1)) for n, i in enumerate(ids)]


records = st.one_of(
    st.none(),
    st.builds(
        lambda cat, price, avail: (cat, price, avail), st.sampled_from(["a", "b"]), st.floats(0, 100), st.booleans()
    ),
)


@settings(max_examples=300, deadline=None)
@given(
    raw=st.dictionaries(st.sampled_from(IDS), records, max_size=12),
    exclude=st.frozensets(st.sampled_from(IDS)),
    block=st.frozensets(st.sampled_from(IDS)),
    bought=st.frozensets(st.sampled_from(IDS)),
    category=st.one_of(st.none(), st.sampled_from(["a", "b"])),
    max_price=st.one_of(st.none(), st.floats(0, 100)),
    drop_unknown=st.booleans(),
)
def test_no_forbidden_item_ever_passes(
    raw: dict[str, tuple[str, float, bool] | None],
    exclude: frozenset[str],
    block: frozenset[str],
    bought: frozenset[str],
    category: str | None,
    max_price: float | None,
    drop_unknown: bool,
) -> None:
    ids = list(raw)
    recs = [
        None if raw[i] is None else ItemRecord(i, raw[i][0], price=raw[i][1], available=raw[i][2])  # type: ignore[index]
        for i in ids
    ]
    state = user_state()
    state.purchased = {i: 0 for i in bought}
    cons = Constraints(exclude, category, None, max_price)
    out = apply_filters(_cands(ids), recs, state, cons, FilterConfig(blocklist=block, drop_unknown=drop_unknown))
    for cand, rec in zip(out.kept, out.records, strict=True):
        assert cand.item_id not in exclude | block | bought
        assert rec is None or rec.available
        assert category is None or (rec is not None and rec.category == category)
        assert max_price is None or (rec is not None and rec.price <= max_price)
        assert not (drop_unknown and rec is None)
    assert [c.item_id for c in out.kept] == [i for i in ids if i in {c.item_id for c in out.kept}]  # order kept
    assert len(out.kept) + sum(out.dropped.values()) == len(ids)


def test_seen_in_last_n_and_the_order_of_counting() -> None:
    state = user_state()  # last_n: i01, i05, i05, i09, i13 (bought)
    ids = ["i01", "i05", "i09", "i13", "i40"]
    recs = [ItemRecord(i, "bags") for i in ids]
    out = apply_filters(_cands(ids), recs, state, Constraints(frozenset({"i13"})), FilterConfig(seen_last_n=3))
    assert [c.item_id for c in out.kept] == ["i01", "i40"]  # the last 3 interactions are i05, i09, i13
    assert out.dropped == {"exclude": 1, "seen": 2}  # i13 is bought too but excluded first
    none_seen = apply_filters(_cands(ids), recs, state, Constraints(), FilterConfig())
    assert [c.item_id for c in none_seen.kept] == ["i01", "i05", "i09", "i40"] and none_seen.dropped == {"purchased": 1}


def test_constraints_come_from_the_request_context() -> None:
    cons = Constraints.from_request(["x"], {"category": "hats", "min_price": 10, "max_price": 20.5, "k": True})
    ids = ["a", "b", "c", "d"]
    recs = [
        ItemRecord("a", "hats", price=15.0),
        ItemRecord("b", "hats", price=25.0),
        ItemRecord("c", "bags", price=15.0),
        ItemRecord("d", "hats", price=5.0),
    ]
    out = apply_filters(_cands(ids), recs, None, cons, FilterConfig())
    assert [c.item_id for c in out.kept] == ["a"] and out.dropped == {"category": 1, "price": 2}
    assert Constraints.from_request([], {"min_price": True}).min_price is None  # a bool is not a price


def test_a_banned_id_listed_twice_is_dropped_twice() -> None:
    cands = _cands(["a", "b", "a"])
    recs = [ItemRecord(i, "x") for i in ("a", "b", "a")]
    out = apply_filters(cands, recs, None, Constraints(frozenset({"a"})), FilterConfig())
    assert [c.item_id for c in out.kept] == ["b"] and out.dropped == {"exclude": 2}
