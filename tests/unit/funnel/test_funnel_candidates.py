"""Retrieval: the de-duplicating merge and every candidate source over the in-memory store and an exact index."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pytest
from funnel_world import CFG, POOLS, T0, World, build_world
from hypothesis import given, settings
from hypothesis import strategies as st

from agents.funnel.candidates import (
    RRF_K,
    Candidate,
    CandidateList,
    Ranked,
    RetrievalContext,
    merge_ranked,
    merge_sources,
)
from agents.funnel.sources import AnnSource, CachedPool, CovisitSource, PoolSource, StaticSource, recent_items
from state.features import category_affinity
from state.space_ids import IdList, SpaceIds
from state.store import DecayedUpdate, WriteBatch


def test_merge_keeps_every_source_and_rank_and_fuses_scores() -> None:
    lists = {"ann": [("a", 0.9), ("b", 0.8), ("c", 0.7)], "trending": [("c", 10.0), ("d", 5.0)]}
    out = merge_sources(lists, {}, 10)
    by_id = {c.item_id: c for c in out}
    assert [c.item_id for c in out] == ["c", "a", "b", "d"]  # b and d tie: ann comes first in the mapping
    assert by_id["c"].sources == ("trending", "ann") and by_id["c"].source_ranks == (0, 2)
    assert by_id["c"].score == pytest.approx(1 / (RRF_K + 1) + 1 / (RRF_K + 3))
    assert by_id["a"].source == "ann"


def test_quotas_cut_each_source_before_merging_and_limit_cuts_the_total() -> None:
    lists = {"ann": [(f"a{i}", 1.0) for i in range(10)], "popular": [(f"p{i}", 1.0) for i in range(10)]}
    out = merge_sources(lists, {"ann": 3, "popular": 0}, 100)
    assert [c.item_id for c in out] == ["a0", "a1", "a2"]
    assert len(merge_sources(lists, {}, 5)) == 5


@settings(max_examples=100, deadline=None)
@given(
    st.dictionaries(
        st.sampled_from(["ann", "covisit", "trending", "popular"]),
        st.lists(st.sampled_from("abcdefghij"), max_size=8),
        max_size=4,
    )
)
def test_merge_is_deterministic_and_duplicate_free(raw: dict[str, list[str]]) -> None:
    lists = {name: [(i, 1.0) for i in items] for name, items in raw.items()}
    a, b = merge_sources(lists, {}, 50), merge_sources(dict(lists), {}, 50)
    assert a == b
    ids = [c.item_id for c in a]
    assert len(ids) == len(set(ids)) == len({i for items in raw.values() for i in items})
    for c in a:  # every source that proposed the item is kept, with its best rank there
        for name, rank in zip(c.sources, c.source_ranks, strict=True):
            assert raw[name].index(c.item_id) == rank
        assert {n for n, items in raw.items() if c.item_id in items} == set(c.sources)
    assert [c.score for c in a] == sorted((c.score for c in a), reverse=True)


@settings(max_examples=200, deadline=None)
@given(
    st.dictionaries(
        st.sampled_from(["ann", "covisit", "trending", "popular", "fresh"]),
        st.lists(st.sampled_from([f"i{j}" for j in range(40)]), max_size=30),
        max_size=5,
    ),
    st.dictionaries(st.sampled_from(["ann", "popular"]), st.integers(0, 20)),
    st.integers(1, 60),
)
def test_merge_equals_the_reference_merge(raw: dict[str, list[str]], quotas: dict[str, int], limit: int) -> None:
    lists = {name: [(i, 1.0) for i in items] for name, items in raw.items()}
    assert merge_sources(lists, quotas, limit) == reference_merge(lists, quotas, limit)


def reference_merge(
    lists: Mapping[str, Sequence[tuple[str, float]]], quotas: Mapping[str, int], limit: int
) -> list[Candidate]:
    """The dictionary-based merge the vectorised one replaced, kept as its oracle."""
    first: dict[str, tuple[int, int, str]] = {}  # item -> (rank, priority, source) of its first hit
    more: dict[str, list[tuple[int, int, str]]] = {}  # items several sources proposed: every hit
    for prio, (name, ranked) in enumerate(lists.items()):
        for rank, (item_id, _) in enumerate(ranked[: quotas.get(name, len(ranked))]):
            hit = first.get(item_id)
            if hit is None:
                first[item_id] = (rank, prio, name)
            elif hit[2] != name:  # a source repeating an item keeps its best (first) rank only
                hits = more.setdefault(item_id, [hit])
                if hits[-1][2] != name:
                    hits.append((rank, prio, name))
    for item_id, hits in more.items():
        hits.sort()
        first[item_id] = hits[0]
    keyed = [(-_ref_fused(item_id, hit, more), hit[0], hit[1], item_id) for item_id, hit in first.items()]
    keyed.sort()
    out = []
    for neg, rank, _, item_id in keyed[:limit]:
        several = more.get(item_id)
        if several is None:
            out.append(Candidate(item_id, (first[item_id][2],), (rank,), -neg))
        else:
            out.append(Candidate(item_id, tuple(n for _, _, n in several), tuple(r for r, _, _ in several), -neg))
    return out


def _ref_fused(item_id: str, hit: tuple[int, int, str], more: Mapping[str, list[tuple[int, int, str]]]) -> float:
    hits = more.get(item_id)
    if hits is None:
        return 1.0 / (RRF_K + 1 + hit[0])
    return sum(1.0 / (RRF_K + 1 + r) for r, _, _ in hits)


def _ctx(w: World, *, new: bool = False, cats: tuple[str, ...] = ()) -> RetrievalContext:
    vec = None if new else (w.vectors.vectors[5] + w.vectors.vectors[9])
    return RetrievalContext("u1", None if new else w.state, T0, vec, cats)


async def test_ann_source_returns_the_exact_nearest_items() -> None:
    w = await build_world()
    got = await AnnSource(w.index, w.vectors.ids, k=5).fetch(_ctx(w))
    q = w.vectors.vectors[5] + w.vectors.vectors[9]
    dots = w.vectors.vectors[:60] @ q
    want = [w.vectors.ids[j] for j in np.argsort(-dots)[:5]]
    assert [i for i, _ in got] == want
    assert [s for _, s in got] == pytest.approx(sorted(dots, reverse=True)[:5], rel=1e-5)
    assert await AnnSource(w.index, w.vectors.ids).fetch(_ctx(w, new=True)) == []


async def test_covisit_sums_over_recent_items_and_drops_the_seeds() -> None:
    w = await build_world()
    ctx = _ctx(w)
    assert recent_items(ctx, 3) == ["i13", "i09", "i05"]
    got = dict(await CovisitSource(w.store, POOLS).fetch(ctx))
    assert set(got) == {"i30", "i31", "i32"}  # i09 is a seed, so not proposed again
    assert got["i31"] == pytest.approx(4.0)  # 2 from i05 + 2 from i09, read at the reference time
    assert list(got) == ["i31", "i30", "i32"]
    assert await CovisitSource(w.store, POOLS).fetch(_ctx(w, new=True)) == []


async def test_pools_answer_new_users_too() -> None:
    w = await build_world()
    new = _ctx(w, new=True)
    trending = await PoolSource(w.store, "trending", POOLS, n=3).fetch(new)
    assert [i for i, _ in trending] == ["i00", "i02", "i04"]
    popular = await PoolSource(w.store, "popular", POOLS, n=2).fetch(new)
    assert [i for i, _ in popular] == ["i59", "i58"]
    fresh = await PoolSource(w.store, "fresh", POOLS, n=100).fetch(new)
    assert len(fresh) == 20 and fresh[0][1] == T0
    assert await PoolSource(w.store, "category", POOLS).fetch(new) == []  # no category known


async def test_category_pool_interleaves_the_context_categories() -> None:
    w = await build_world()
    strongest = max(category_affinity(w.state, T0, CFG).items(), key=lambda t: t[1])[0]
    assert strongest == "bags"
    got = await PoolSource(w.store, "category", POOLS, n=4).fetch(_ctx(w, cats=("bags", "hats")))
    assert [i for i, _ in got] == ["i57", "i58", "i53", "i54"]
    assert [w.items[i].category for i, _ in got] == ["bags", "hats", "bags", "hats"]


async def test_cached_category_pool_answers_like_the_store_until_its_ttl() -> None:
    w = await build_world()
    clock = [0.0]
    inner = PoolSource(w.store, "category", POOLS, n=4)
    cached = CachedPool(inner, ttl_s=1.0, timer=lambda: clock[0])
    ctx = _ctx(w, cats=("bags", "hats"))
    want = await inner.fetch(ctx)
    assert await cached.fetch(ctx) == await cached.fetch(ctx) == want
    assert await cached.fetch(_ctx(w, cats=("hats", "bags"))) == await inner.fetch(_ctx(w, cats=("hats", "bags")))
    update = {"i03": 1e6}  # i03 tops the hats pool
    await w.store.write_batch(WriteBatch("t", decayed=[DecayedUpdate(POOLS.category_popular("hats"), T0, update)]))
    assert await cached.fetch(ctx) == want  # within the TTL: the cached lists, interleaved as before
    clock[0] = 2.0
    fresh = await cached.fetch(ctx)
    assert fresh == await inner.fetch(ctx) and fresh[1][0] == "i03"


async def test_static_source_respects_exclude() -> None:
    ctx = RetrievalContext("u", None, T0, exclude=frozenset({"b"}))
    assert await StaticSource([("a", 2.0), ("b", 1.0)]).fetch(ctx) == [("a", 2.0)]


@settings(max_examples=100, deadline=None)
@given(
    st.lists(st.integers(0, 30), unique=True, max_size=20),
    st.lists(st.integers(0, 40), max_size=20),
    st.integers(0, 25),
    st.integers(1, 50),
)
def test_merge_ranked_carries_each_candidates_index_position(
    ann_pos: list[int], pool: list[int], quota: int, limit: int
) -> None:
    space = [f"i{j}" for j in range(31)]  # the index knows i0..i30; the pool also proposes i31..i40
    ann = Ranked([(space[p], 1.0) for p in ann_pos], np.array(ann_pos, np.int64), space)
    lists = {"popular": [(f"i{j}", 1.0) for j in pool], "ann": ann}
    out = merge_ranked(lists, {"ann": quota}, limit)
    assert out.candidates == merge_sources(lists, {"ann": quota}, limit) and out.space is space
    from_ann = set(ann_pos[:quota])
    for cand, pos in zip(out.candidates, out.positions.tolist(), strict=True):
        assert (space[pos] == cand.item_id) if cand.item_id in {space[p] for p in from_ann} else pos == -1


@settings(max_examples=100, deadline=None)
@given(
    st.dictionaries(
        st.sampled_from(["ann", "covisit", "trending", "popular"]),
        st.lists(st.sampled_from([f"i{j}" for j in range(15)]), max_size=12),
        max_size=4,
    ),
    st.lists(st.integers(0, 14), max_size=10),
)
def test_candidate_columns_read_like_the_list_of_candidates(raw: dict[str, list[str]], rows: list[int]) -> None:
    cands = merge_ranked({n: [(i, 1.0) for i in items] for n, items in raw.items()}, {}, 50).candidates
    listed = list(cands)
    rows = [r for r in rows if r < len(listed)]
    assert CandidateList.of(listed) == cands == listed and cands.primary == [c.source for c in listed]
    assert cands.take(rows) == [listed[r] for r in rows] and cands.take(rows).ids == [listed[r].item_id for r in rows]
    assert cands[1:3] == listed[1:3] and [cands[j] for j in range(len(cands))] == listed


@settings(max_examples=200, deadline=None)
@given(
    st.dictionaries(
        st.sampled_from(["ann", "covisit", "trending", "popular", "fresh"]),
        st.lists(st.integers(0, 39), max_size=30),
        max_size=5,
    ),
    st.dictionaries(st.sampled_from(["ann", "popular"]), st.integers(0, 20)),
    st.integers(1, 60),
)
def test_merging_lists_of_one_space_by_position_equals_the_reference_merge(
    raw: dict[str, list[int]], quotas: dict[str, int], limit: int
) -> None:
    space = IdList(f"i{j}" for j in range(40))
    lists = {name: Ranked.lazy(np.array(pos, np.int64), np.ones(len(pos)), space) for name, pos in raw.items()}
    out = merge_ranked(lists, quotas, limit)
    plain = {name: [(space[p], 1.0) for p in pos] for name, pos in raw.items()}
    assert out.candidates == reference_merge(plain, quotas, limit)
    assert out.positions.tolist() == space.positions(list(out.ids)).tolist()
    assert isinstance(out.ids, SpaceIds) or not out.candidates  # no id string was read to merge
    assert all(r._pairs is None for r in lists.values())
