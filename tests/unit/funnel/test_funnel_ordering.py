"""Ordering: MMR (lambda 1 is score order), category caps, clamped overrides and exact exploration propensities."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agents.funnel.ordering import (
    OrderingConfig,
    category_codes,
    epsilon_greedy,
    explore_pool,
    mmr,
    resolve_knobs,
)


def _unit(n: int, seed: int = 0) -> np.ndarray:
    v = np.random.default_rng(seed).normal(size=(n, 6)).astype(np.float32)
    unit: np.ndarray = v / np.linalg.norm(v, axis=1, keepdims=True)
    return unit


@settings(max_examples=200, deadline=None)
@given(
    values=st.lists(st.sampled_from([0.0, 0.1, 0.5, 0.5, 1.0, 2.0, 3.5]), min_size=1, max_size=40),
    k=st.integers(1, 50),
    seed=st.integers(0, 5),
)
def test_lambda_one_is_exactly_score_order(values: list[float], k: int, seed: int) -> None:
    v = np.asarray(values)
    want = np.argsort(-v, kind="stable")[:k].tolist()
    assert mmr(v, _unit(len(v), seed), k, 1.0) == want
    assert mmr(v, None, k, 0.3) == want  # no embeddings: nothing to diversify on


def test_lower_lambda_trades_score_for_diversity() -> None:
    # two near-duplicates on top, a different item a little lower
    v = np.array([1.0, 0.98, 0.9, 0.0])
    e = np.array([[1, 0], [0.999, 0.045], [0, 1], [0.7, 0.7]], dtype=np.float32)
    e /= np.linalg.norm(e, axis=1, keepdims=True)
    assert mmr(v, e, 3, 1.0) == [0, 1, 2]
    assert mmr(v, e, 3, 0.7) == [0, 2, 1]
    # the selection rule, checked by hand at step 2 for lambda 0.7: rel (min-max) and max cosine to item 0
    rel = (v - v.min()) / (v.max() - v.min())
    step2 = 0.7 * rel - 0.3 * (e @ e[0])
    assert int(np.argmax(np.where([False, True, True, True], step2, -np.inf))) == 2


def test_category_caps_hold_and_may_shorten_the_list() -> None:
    v = np.linspace(1.0, 0.0, 10)
    cats = category_codes(["a", "a", "a", "b", "a", "b", "b", "c", "a", "c"])
    picked = mmr(v, _unit(10), 6, 0.9, cats=cats, cap=2)
    assert len(picked) == 6 and max(Counter(cats[picked].tolist()).values()) <= 2
    assert mmr(v, None, 6, 1.0, cats=cats, cap=2) == [0, 1, 3, 5, 7, 9]
    assert mmr(v, None, 10, 1.0, cats=cats, cap=1) == [0, 3, 7]


def test_overrides_are_clamped_to_the_configured_limits() -> None:
    cfg = OrderingConfig(mmr_lambda=0.8, min_lambda=0.5, epsilon=0.05, max_epsilon=0.2, max_k=50)
    k = resolve_knobs(20, {"mmr_lambda": 0.95, "epsilon": 0.1}, cfg)
    assert (k.k, k.mmr_lambda, k.epsilon) == (20, 0.95, 0.1)
    k = resolve_knobs(0, {"mmr_lambda": -3, "epsilon": 9.0}, cfg)
    assert (k.k, k.mmr_lambda, k.epsilon) == (1, 0.5, 0.2)
    assert resolve_knobs(10, {}, cfg).mmr_lambda == 0.8
    with pytest.raises(ValueError, match="inconsistent ordering config"):
        OrderingConfig(epsilon=0.5, max_epsilon=0.2)


def test_logged_propensities_are_the_probabilities_actually_used() -> None:
    """Monte Carlo over seeds: the frequency of each whole slate equals the product of its logged propensities,
    and each slot's logged propensity equals the conditional frequency given the slots before it."""
    exploit, pool, eps, n = [0, 1, 2], np.array([3, 4]), 0.3, 40_000
    slates: Counter[tuple[int, ...]] = Counter()
    logged: dict[tuple[int, ...], list[float]] = {}
    for seed in range(n):
        s = epsilon_greedy(exploit, pool, eps, np.random.default_rng(seed))
        slates[tuple(s.order)] += 1
        prev = logged.setdefault(tuple(s.order), s.propensities)
        assert prev == s.propensities  # the same slate always logs the same probabilities
    for order, count in slates.items():
        p = float(np.prod(logged[order]))
        se = np.sqrt(p * (1 - p) / n)
        assert abs(count / n - p) < 4 * se + 1e-4, (order, count / n, p)
    # slot-level: P(slot 1 = x | slot 0 = 3) from the counts equals the propensity logged at slot 1
    after3 = Counter(o[1] for o in slates.elements() if o[0] == 3)
    total = sum(after3.values())
    assert after3[0] / total == pytest.approx(1 - eps, abs=0.02)
    assert after3[4] / total == pytest.approx(eps / 1, abs=0.02)  # only item 4 is left in the pool
    assert logged[(3, 4, 0)] == pytest.approx([eps / 2, eps / 1, 1.0])  # pool empty at slot 2: exploit for sure


def test_exploration_respects_caps_and_the_pool_is_the_best_of_the_rest() -> None:
    values = np.array([5.0, 4.0, 3.0, 2.0, 1.0, 0.5])
    assert explore_pool(values, [0, 2], 3).tolist() == [1, 3, 4]
    cats = category_codes(["a", "a", "b", "a", "b", "b"])
    for seed in range(200):
        s = epsilon_greedy([0, 2], np.array([1, 3, 4]), 0.9, np.random.default_rng(seed), cats=cats, cap=1)
        shown = cats[s.order].tolist()
        explored_cats = [c for c, x in zip(shown, s.explored, strict=True) if x]
        assert len(set(explored_cats)) == len(explored_cats)
        assert all(p > 0 for p in s.propensities)


def test_zero_epsilon_is_deterministic_with_propensity_one() -> None:
    s = epsilon_greedy([4, 1, 2], np.array([0, 3]), 0.0, np.random.default_rng(0))
    assert s.order == [4, 1, 2] and s.propensities == [1.0, 1.0, 1.0] and s.explored == [False] * 3
