"""New items join a served index in place: every backend, ids mapped back through the growing id list."""

from __future__ import annotations

import numpy as np
import pytest

from agents.funnel.candidates import RetrievalContext
from agents.funnel.sources import AnnSource
from models.errors import AnnError
from state.ann import AnnKind, build_index
from state.live_index import LiveIndex

DIM = 8


def base(kind: AnnKind, n: int = 400, seed: int = 0) -> tuple[LiveIndex, np.ndarray]:
    rng = np.random.default_rng(seed)
    vecs = rng.normal(size=(n, DIM)).astype(np.float32)
    params = {"nlist": 4, "nprobe": 4} if kind == "ivf" else {}
    index = build_index(kind, np.arange(n, dtype=np.int64), vecs, **params)
    return LiveIndex(index, [f"i{k}" for k in range(n)]), vecs


def longest_along(vecs: np.ndarray, seed: int, n: int) -> np.ndarray:
    """Vectors as long as the longest indexed one, in new random directions: each is its own best match."""
    dirs = np.random.default_rng(seed).normal(size=(n, DIM))
    dirs /= np.linalg.norm(dirs, axis=1, keepdims=True)
    return (dirs * np.linalg.norm(vecs, axis=1).max()).astype(np.float32)


@pytest.mark.parametrize("kind", ["exact", "hnsw", "ivf"])
def test_added_items_are_found_and_the_old_ones_keep_their_answers(kind: AnnKind) -> None:
    live, vecs = base(kind)
    query = vecs[:5]
    ids_before, scores_before = live.index.search(query, 3)
    index_object = live.index
    new = longest_along(vecs, 1, 2)
    assert live.add(["new-a", "new-b"], new) == 2
    assert live.index is index_object and len(live.index) == 402 and live.item_ids[-2:] == ["new-a", "new-b"]
    ids, _ = live.index.search(new, 1)
    assert [live.item_ids[i] for i in ids[:, 0].tolist()] == ["new-a", "new-b"]
    ids_after, scores_after = live.index.search(query, 5)
    for row in range(5):  # among the old items, the same answers with the same scores
        old = ids_after[row] < 400
        assert np.array_equal(ids_after[row][old][:3], ids_before[row])
        assert np.allclose(scores_after[row][old][:3], scores_before[row], rtol=1e-5)


def test_known_and_repeated_ids_are_skipped() -> None:
    live, vecs = base("exact", n=10)
    assert live.add(["i3", "x", "x", "y"], vecs[:4]) == 2
    assert live.item_ids[10:] == ["x", "y"] and "x" in live and "i3" in live and len(live) == 12
    assert live.add(["x", "y"], vecs[:2]) == 0
    (ids,), _ = live.index.search(vecs[1:2], 2)
    assert sorted(live.item_ids[i] for i in ids.tolist()) == ["i1", "x"]  # x was stored with vecs[1]


def test_a_bad_add_changes_nothing() -> None:
    live, _ = base("exact", n=10)
    with pytest.raises(AnnError, match=r"shape \[n, 8\]"):
        live.add(["x"], np.ones((1, DIM + 1), dtype=np.float32))
    with pytest.raises(AnnError, match="2 ids for 1 vectors"):
        live.add(["x", "y"], np.ones((1, DIM), dtype=np.float32))
    assert len(live) == 10 and len(live.index) == 10 and "x" not in live


def test_the_index_must_match_its_ids() -> None:
    index = build_index("exact", np.arange(3, dtype=np.int64), np.eye(3, DIM, dtype=np.float32))
    with pytest.raises(AnnError, match="3 vectors but 2 item ids"):
        LiveIndex(index, ["a", "b"])


async def test_ann_source_over_a_live_index_sees_items_added_after_it_was_built() -> None:
    live, vecs = base("exact", n=50)
    source = AnnSource(live.index, live.item_ids, k=1)
    target = longest_along(vecs, 2, 1)
    ctx = RetrievalContext("u", None, 0.0, user_vector=target[0])
    (before,) = await source.fetch(ctx)
    assert before[0].startswith("i")
    live.add(["fresh"], target)
    (got,) = await source.fetch(ctx)
    assert got[0] == "fresh" and got[1] == pytest.approx(float(target[0] @ target[0]), rel=1e-5)
