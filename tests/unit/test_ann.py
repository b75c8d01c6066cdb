"""Contract of every AnnIndex backend: exact, HNSW and IVF."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from models.errors import AnnError
from state.ann import AnnIndex, ExactIndex, HnswIndex, build_index, load_index, recall_at_k

DIM = 16


def data(n: int = 2000, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    centers = rng.normal(size=(20, DIM))
    vecs = centers[rng.integers(0, 20, n)] + 0.3 * rng.normal(size=(n, DIM))
    return (np.arange(n, dtype=np.int64) * 7 + 3), vecs.astype(np.float32)


@pytest.fixture(params=["exact", "hnsw", "ivf"])
def index(request: pytest.FixtureRequest) -> AnnIndex:
    ids, vecs = data()
    return build_index(request.param, ids, vecs)


def exact_topk(vecs: np.ndarray, ids: np.ndarray, q: np.ndarray, k: int) -> np.ndarray:
    return ids[np.argsort(-(q @ vecs.T), axis=1, kind="stable")[:, :k]]


def test_search_returns_ids_and_inner_product_scores(index: AnnIndex) -> None:
    ids, vecs = data()
    q = np.random.default_rng(1).normal(size=(30, DIM)).astype(np.float32)
    got_ids, got_scores = index.search(q, 20)
    assert got_ids.shape == got_scores.shape == (30, 20)
    assert recall_at_k(got_ids, exact_topk(vecs, ids, q, 20)) >= 0.95
    pos = {int(i): r for r, i in enumerate(ids)}
    want = np.einsum("ij,ij->i", q, vecs[[pos[int(i)] for i in got_ids[:, 0]]])
    assert np.allclose(got_scores[:, 0], want, atol=1e-3)
    assert np.all(np.diff(got_scores, axis=1) <= 1e-4)  # best first


def test_add_without_rebuild_finds_new_vectors(index: AnnIndex) -> None:
    ids, vecs = data()
    new_ids, new_vecs = data(300, seed=9)
    new_ids = new_ids + 10**6
    before = len(index)
    index.add(new_ids, new_vecs)
    assert len(index) == before + 300
    q = np.random.default_rng(3).normal(size=(30, DIM)).astype(np.float32)
    got, _ = index.search(q, 20)
    want = exact_topk(np.vstack([vecs, new_vecs]), np.concatenate([ids, new_ids]), q, 20)
    assert recall_at_k(got, want) >= 0.95
    assert np.isin(got, new_ids).any()


def test_save_load_round_trip(index: AnnIndex, tmp_path: Path) -> None:
    q = np.random.default_rng(2).normal(size=(5, DIM)).astype(np.float32)
    index.save(tmp_path / "i.faiss")
    loaded = load_index(tmp_path / "i.faiss")
    assert type(loaded) is type(index) and loaded.dim == DIM and len(loaded) == len(index)
    a, sa = index.search(q, 10)
    b, sb = loaded.search(q, 10)
    assert np.array_equal(a, b) and np.allclose(sa, sb, atol=1e-5)


def test_k_larger_than_index_pads_with_minus_one(index: AnnIndex) -> None:
    small = build_index("exact", np.array([1, 2]), np.eye(2, DIM, dtype=np.float32))
    ids, scores = small.search(np.ones((1, DIM), dtype=np.float32), 4)
    assert ids[0, 2:].tolist() == [-1, -1] and np.all(np.isneginf(scores[0, 2:]))


def test_bad_inputs_raise_ann_error(index: AnnIndex, tmp_path: Path) -> None:
    with pytest.raises(AnnError, match=r"queries must have shape \[n, 16\]"):
        index.search(np.zeros((1, 3), dtype=np.float32), 5)
    with pytest.raises(AnnError, match="k must be >= 1"):
        index.search(np.zeros((1, DIM), dtype=np.float32), 0)
    with pytest.raises(AnnError, match="NaN"):
        index.add(np.array([1]), np.full((1, DIM), np.nan, dtype=np.float32))
    with pytest.raises(AnnError, match="2 ids for 1 vectors"):
        index.add(np.array([1, 2]), np.zeros((1, DIM), dtype=np.float32))
    with pytest.raises(AnnError, match="index file not found"):
        load_index(tmp_path / "missing.faiss")
    (tmp_path / "junk.faiss").write_bytes(b"not an index at all")
    with pytest.raises(AnnError, match=r"junk\.faiss: not a readable FAISS index"):
        load_index(tmp_path / "junk.faiss")


def test_unknown_kind_lists_valid_ones() -> None:
    with pytest.raises(AnnError, match="valid kinds: exact, hnsw, ivf"):
        build_index("annoy", np.array([1]), np.zeros((1, DIM), dtype=np.float32))  # type: ignore[arg-type]


def test_hnsw_ef_search_is_tunable() -> None:
    ids, vecs = data(500)
    h = HnswIndex(DIM, ef_search=64)
    h.add(ids, vecs)
    h.ef_search = 128
    assert h.ef_search == 128
    assert isinstance(ExactIndex(DIM), ExactIndex)
