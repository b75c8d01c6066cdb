"""Metrics on hand-computed examples and the full-ranking harness (seen items excluded)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from models.data import Interactions
from models.evaluate import evaluate, intra_list_diversity, ndcg_at_k, target_ranks
from models.splits import Split

CATS = np.eye(4, dtype=np.float32)[[0, 0, 1, 2, 3, 3]]


def tiny_split() -> Split:
    # user 0 saw item 0 and must find item 3; user 1 saw item 1 and must find item 5
    train = Interactions.build(np.array([0, 1]), np.array([0, 1]), np.array([1, 1]))
    empty = Interactions.build(np.array([], np.int64), np.array([], np.int64), np.array([], np.int64))
    test = Interactions.build(np.array([0, 1]), np.array([3, 5]), np.array([2, 2]))
    return Split("leave-last-out", 2, 6, train, empty, test)


def fixed_scorer(users: np.ndarray) -> np.ndarray:
    table = np.array(
        [
            [9.0, 5.0, 4.0, 3.0, 2.0, 1.0],  # item 0 is seen and must be skipped: item 3 ranks 3rd
            [0.0, 9.0, 1.0, 2.0, 3.0, 8.0],  # item 1 seen: item 5 ranks 1st
        ],
        dtype=np.float32,
    )
    out: np.ndarray = table[users]
    return out


def test_hand_computed_full_ranking_metrics() -> None:
    res = evaluate(fixed_scorer, tiny_split(), "test", CATS, k=2, recall_k=3)
    # user 0: rank 3 -> miss at k=2, recall@3 hit, mrr 1/3; user 1: rank 1
    assert res.metrics["hr@2"] == pytest.approx(0.5)
    assert res.metrics["ndcg@2"] == pytest.approx(0.5)
    assert res.metrics["recall@3"] == pytest.approx(1.0)
    assert res.metrics["mrr"] == pytest.approx((1 / 3 + 1) / 2)
    # top-2 lists: user 0 -> [1, 2], user 1 -> [5, 4]; 4 distinct of 6 items
    assert res.metrics["coverage"] == pytest.approx(4 / 6)
    # ILD: [1,2] categories 0 vs 1 -> 1.0; [5,4] same category -> 0.0
    assert res.metrics["ild"] == pytest.approx(0.5)
    assert res.history_len.tolist() == [1, 1]


def test_ndcg_and_ranks_by_hand() -> None:
    assert ndcg_at_k(np.array([2.0]), 1, 10) == pytest.approx(1 / math.log2(3))
    scores = np.array([[1.0, 1.0, 1.0]], dtype=np.float32)
    assert target_ranks(scores, np.array([0]), np.array([2])).tolist() == [2.0]  # expected rank among ties
    top = np.array([[0, 1]])
    assert intra_list_diversity(top, CATS).tolist() == [0.0]


def test_seen_items_are_never_recommended() -> None:
    def seen_first(users: np.ndarray) -> np.ndarray:
        s = np.zeros((users.shape[0], 6), dtype=np.float32)
        s[:, 0] = 100.0
        s[:, 1] = 100.0
        return s

    res = evaluate(seen_first, tiny_split(), "test", CATS, k=2)
    assert res.metrics["coverage"] <= 4 / 6  # items 0/1 (each user's seen item) cannot both appear twice
