"""Peers: popularity, EASE and ALS sanity on tiny data."""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from models.baselines import Als, Ease, Popularity, tune_and_test
from models.splits import leave_last_out


def test_popularity_scores_are_counts() -> None:
    m = sp.csr_matrix(np.array([[1, 1, 0], [1, 0, 0], [1, 0, 1]], dtype=np.float32))
    pop = Popularity()
    pop.fit(m)
    assert pop.score(np.array([0, 2])).tolist() == [[3, 1, 1], [3, 1, 1]]


def test_ease_has_zero_diagonal_and_learns_co_occurrence() -> None:
    rng = np.random.default_rng(0)
    # items 0 and 1 always co-occur; 2..9 are noise
    x = (rng.random((200, 10)) < 0.2).astype(np.float32)
    x[:, 1] = x[:, 0]
    ease = Ease(l2=10.0)
    ease.fit(sp.csr_matrix(x))
    assert ease._b is not None
    assert np.allclose(np.diag(ease._b), 0.0)
    assert int(np.argmax(ease._b[0])) == 1
    user = sp.csr_matrix(np.eye(10, dtype=np.float32)[[0]])
    ease._x = user
    assert int(np.argmax(ease.score(np.array([0]))[0, 1:])) + 1 == 1


def test_als_is_seeded(cyclic) -> None:  # type: ignore[no-untyped-def]
    split = leave_last_out(cyclic.interactions, cyclic.n_users, cyclic.n_items)
    runs = [
        tune_and_test("als", Als, [{"factors": 8, "iterations": 3}], split, cyclic.content.category) for _ in range(2)
    ]
    assert runs[0].test.metrics == runs[1].test.metrics


def test_ease_beats_popularity_on_structured_data(cyclic) -> None:  # type: ignore[no-untyped-def]
    split = leave_last_out(cyclic.interactions, cyclic.n_users, cyclic.n_items)
    cats = cyclic.content.category
    ease = tune_and_test("ease", Ease, [{"l2": 1.0}, {"l2": 10.0}], split, cats)
    pop = tune_and_test("popularity", Popularity, [{}], split, cats)
    assert ease.test.metrics["ndcg@10"] > pop.test.metrics["ndcg@10"]
