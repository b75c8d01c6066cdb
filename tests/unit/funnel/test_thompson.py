"""Thompson sampling over sources: exact win probabilities, logged propensities equal to draw frequencies."""

from __future__ import annotations

from collections import Counter
from math import exp, lgamma, log

import numpy as np
import pytest
from funnel_world import CFG, T0, all_sources, build_world

from agents.funnel.config import FunnelConfig
from agents.funnel.ordering import OrderingConfig, resolve_knobs
from agents.funnel.pipeline import Funnel
from agents.funnel.scoring import FakeRanker
from agents.funnel.thompson import BetaPrior, SourcePosteriors, thompson_slate, win_probabilities
from streams.records import RecommendRequest


def _lbeta(a: float, b: float) -> float:
    return lgamma(a) + lgamma(b) - lgamma(a + b)


def _p_second_wins(a1: int, b1: int, a2: int, b2: int) -> float:
    """Closed form of P(Beta(a2, b2) > Beta(a1, b1)) for integer a2 (Evan Miller's formula)."""
    return sum(exp(_lbeta(a1 + i, b1 + b2) - log(b2 + i) - _lbeta(1 + i, b2) - _lbeta(a1, b1)) for i in range(a2))


@pytest.mark.parametrize(
    ("a1", "b1", "a2", "b2"),
    [(3, 7, 5, 9), (1, 1, 40, 400), (120, 880, 5, 45), (2, 1000, 900, 20), (1, 1, 3000, 30000), (500, 5000, 510, 5000)],
)
def test_two_source_win_probability_is_exact(a1: int, b1: int, a2: int, b2: int) -> None:
    p = win_probabilities([a1, a2], [b1, b2])
    assert p[1] == pytest.approx(_p_second_wins(a1, b1, a2, b2), abs=1e-9)
    assert p.sum() == pytest.approx(1.0, abs=1e-12)


def test_win_probabilities_match_sampled_argmax_of_thompson() -> None:
    a = np.array([3.0, 50.0, 2.0, 7.0, 1.0, 400.0])
    b = np.array([40.0, 300.0, 5.0, 80.0, 1.0, 3000.0])
    n = 400_000
    draws = np.random.default_rng(7).beta(a[:, None], b[:, None], size=(a.size, n)).argmax(axis=0)
    freq = np.bincount(draws, minlength=a.size) / n
    p = win_probabilities(a, b)
    sigma = np.sqrt(p * (1 - p) / n)
    assert np.all(np.abs(freq - p) <= 5 * sigma + 1e-6), (freq, p)


def test_win_probabilities_reject_bad_parameters() -> None:
    with pytest.raises(ValueError, match="positive"):
        win_probabilities([1.0, 0.0], [1.0, 1.0])
    assert win_probabilities([2.0], [3.0]).tolist() == [1.0]


def _posteriors() -> SourcePosteriors:
    post = SourcePosteriors(BetaPrior(1.0, 1.0))
    post.served("r0", [(f"a{i}", "ann") for i in range(20)] + [(f"p{i}", "popular") for i in range(20)])
    for i in range(6):
        post.clicked("r0", f"a{i}")
    post.clicked("r0", "p0")
    return post


SOURCES = ["ann", "ann", "popular", "ann", "trending", "popular", "trending", "ann"]


def test_logged_propensities_equal_empirical_draw_frequencies() -> None:
    post = _posteriors()
    ranked = list(range(len(SOURCES)))
    n = 20_000
    slates: Counter[tuple[int, ...]] = Counter()
    logged: dict[tuple[int, ...], float] = {}
    for seed in range(n):
        s = thompson_slate(ranked, SOURCES, 3, post, np.random.default_rng(seed), exploit=[0, 1, 2])
        key = tuple(s.order)
        slates[key] += 1
        prob = float(np.prod(s.propensities))
        assert logged.setdefault(key, prob) == prob  # the same slate always logs the same probability
    assert 0.999 < sum(logged.values()) <= 1.0 + 1e-9  # the drawn slates hold almost all the probability
    for key, count in slates.items():
        p = logged[key]
        assert abs(count / n - p) <= 5 * np.sqrt(p * (1 - p) / n) + 1e-4, (key, count / n, p)
    first = Counter(SOURCES[k[0]] for k in slates.elements())
    want = win_probabilities(*post.params(["ann", "popular", "trending"]))
    for name, p in zip(["ann", "popular", "trending"], want, strict=True):
        assert first[name] / n == pytest.approx(p, abs=5 * np.sqrt(p * (1 - p) / n))


def test_slots_take_each_sources_best_remaining_candidate_and_are_seeded() -> None:
    post = _posteriors()
    a = thompson_slate(list(range(8)), SOURCES, 8, post, np.random.default_rng(3), exploit=[0, 1])
    b = thompson_slate(list(range(8)), SOURCES, 8, post, np.random.default_rng(3), exploit=[0, 1])
    assert a == b and sorted(a.order) == list(range(8))
    for name in set(SOURCES):
        assert [j for j in a.order if SOURCES[j] == name] == [j for j in range(8) if SOURCES[j] == name]
    assert a.explored == [j not in (0, 1) for j in a.order]
    # once only one source has candidates left, its slots are certain
    last = max(i for i, j in enumerate(a.order) if SOURCES[j] != SOURCES[a.order[-1]]) + 1
    assert a.propensities[last:] == [1.0] * (8 - last)


def test_category_cap_holds_and_can_shorten_the_list() -> None:
    cats = np.array([0, 0, 0, 1, 1, 0, 0, 0], dtype=np.int64)
    s = thompson_slate(list(range(8)), SOURCES, 6, _posteriors(), np.random.default_rng(1), cats=cats, cap=2)
    assert len(s.order) == 4 and Counter(cats[s.order].tolist()) == {0: 2, 1: 2}


def test_posteriors_count_impressions_and_credit_clicks_once() -> None:
    post = SourcePosteriors(BetaPrior(2.0, 3.0), memory=2)
    post.served("r1", [("i1", "ann"), ("i2", "popular")])
    assert post.clicked("r1", "i2") and not post.clicked("r1", "i2") and not post.clicked("nope", "i1")
    assert post.params(["ann", "popular", "fresh"]) == ([2.0, 3.0, 2.0], [4.0, 3.0, 3.0])
    post.served("r2", [("i3", "ann")])
    post.served("r3", [("i4", "ann")])
    assert not post.clicked("r1", "i1")  # r1 fell out of the bounded memory


def test_requests_pick_a_policy_only_among_the_allowed() -> None:
    cfg = OrderingConfig(policy="none", allowed_policies=("none", "thompson"))
    assert resolve_knobs(10, {"exploration": "thompson"}, cfg).policy == "thompson"
    assert resolve_knobs(10, {"exploration": "epsilon"}, cfg).policy == "none"
    assert resolve_knobs(10, {"exploration": 3}, cfg).policy == "none"
    with pytest.raises(ValueError, match="inconsistent"):
        OrderingConfig(policy="epsilon", allowed_policies=("none",))


async def test_funnel_logs_the_thompson_probabilities_it_drew_with() -> None:
    w = await build_world()
    post = _posteriors()
    cfg = FunnelConfig(ordering=OrderingConfig(mmr_lambda=1.0, policy="thompson"))
    funnel = Funnel(cfg, w.store, all_sources(w), vectors=w.vectors, features=CFG, ranker=FakeRanker(), posteriors=post)
    req = RecommendRequest(correlation_id="c1", user_id="u1", k=10)
    res = await funnel.run(req, w.state, now=T0)
    again = await funnel.run(req, w.state, now=T0)
    assert res.items == again.items and res.propensities == again.propensities  # seeded by correlation id
    assert res.knobs.policy == "thompson" and len(res.items) == 10
    names = sorted(n for n, c in res.source_counts.items() if c)
    possible = set()  # every probability a slot could log: a source's win probability within a subset of sources
    for mask in range(1, 2 ** len(names)):
        subset = [n for i, n in enumerate(names) if mask >> i & 1]
        possible |= {round(float(p), 12) for p in win_probabilities(*post.params(subset))}
    assert all(round(p, 12) in possible for p in res.propensities)
    assert any(p < 1.0 for p in res.propensities)
    off = await funnel.run(req.model_copy(update={"context": {"exploration": "none"}}), w.state, now=T0)
    assert off.propensities == [1.0] * 10 and not any(off.explored) and off.knobs.policy == "none"
