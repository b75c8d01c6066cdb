"""Thompson sampling over candidate sources: Beta posteriors, exact win probabilities, and the slate draw.

Each slot draws a source with the probability that its Beta sample would be the largest (the distribution of
Thompson sampling's argmax), computed by deterministic quadrature, then shows that source's best remaining
candidate. Drawing from the computed probabilities rather than from sampled noise makes the logged propensity
exactly the probability the draw used.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import numpy.typing as npt
from scipy.special import betainc, betaincinv, betaln

from agents.funnel.ordering import Slate

F64 = npt.NDArray[np.float64]
I64 = npt.NDArray[np.int64]

#: Quantile levels of every posterior that become panel edges of the quadrature (each panel then holds a
#: small, smooth piece of every density, where 8-point Gauss-Legendre is accurate to ~1e-9).
_LEVELS = np.array([1e-12, 1e-6, 1e-3, 0.02, 0.1, 0.25, 0.5, 0.75, 0.9, 0.98, 0.999, 1 - 1e-6, 1 - 1e-12])
_GL_X, _GL_W = np.polynomial.legendre.leggauss(8)


@lru_cache(maxsize=4096)
def _cached(alpha: tuple[float, ...], beta: tuple[float, ...]) -> F64:
    return _integrate(np.asarray(alpha, dtype=np.float64), np.asarray(beta, dtype=np.float64))


def win_probabilities(alpha: Sequence[float], beta: Sequence[float]) -> F64:
    """``P(theta_s = max_t theta_t)`` for independent ``theta_s ~ Beta(alpha[s], beta[s])`` (sums to 1).

    ``P_s = integral f_s(x) prod_{t != s} F_t(x) dx`` by composite Gauss-Legendre on panels cut at the
    quantiles of every posterior, so narrow and wide posteriors are both resolved.

    >>> win_probabilities([1.0, 1.0], [1.0, 1.0]).round(6).tolist()
    [0.5, 0.5]
    >>> round(float(win_probabilities([2.0, 1.0], [1.0, 1.0])[0]), 6)  # integral of 2x * x
    0.666667
    """
    a, b = tuple(float(v) for v in alpha), tuple(float(v) for v in beta)
    if len(a) != len(b) or not a or min(a) <= 0 or min(b) <= 0:
        raise ValueError(f"need matching positive Beta parameters, got alpha={alpha} beta={beta}")
    return _cached(a, b).copy()  # posteriors repeat between clicks: the cache keeps serving cheap


def _integrate(a: F64, b: F64) -> F64:
    if a.size == 1:
        return np.ones(1)
    edges = np.unique(np.concatenate([[0.0, 1.0], betaincinv(a[:, None], b[:, None], _LEVELS[None, :]).ravel()]))
    lo, hi = edges[:-1], edges[1:]
    half = (hi - lo)[:, None] / 2.0
    x = ((lo + hi)[:, None] / 2.0 + half * _GL_X[None, :]).ravel()
    w = (half * _GL_W[None, :]).ravel()
    logpdf = (a[:, None] - 1) * np.log(x) + (b[:, None] - 1) * np.log1p(-x) - betaln(a, b)[:, None]
    cdf = betainc(a[:, None], b[:, None], x[None, :])
    others = _leave_one_out_products(cdf)
    p = (np.exp(logpdf) * others) @ w
    return np.asarray(p / p.sum(), dtype=np.float64)


def _leave_one_out_products(rows: F64) -> F64:
    """``out[s] = prod_{t != s} rows[t]`` without dividing (a CDF can be exactly 0)."""
    n = rows.shape[0]
    before = np.ones_like(rows)
    after = np.ones_like(rows)
    for s in range(1, n):
        before[s] = before[s - 1] * rows[s - 1]
        after[n - 1 - s] = after[n - s] * rows[n - s]
    out: F64 = before * after
    return out


@dataclass(frozen=True, slots=True)
class BetaPrior:
    """Prior pseudo-counts of each source's click rate: ``Beta(alpha, beta)``."""

    alpha: float = 1.0
    beta: float = 1.0

    def __post_init__(self) -> None:
        if self.alpha <= 0 or self.beta <= 0:
            raise ValueError(f"Beta prior needs positive parameters, got {self}")


class SourcePosteriors:
    """Clicks and impressions per candidate source, kept by one worker (its served lists and its clicks).

    ``served`` remembers which source put each item of the last ``memory`` lists, so a click carrying the
    list's ``request_id`` is credited to that source; clicks on unknown lists are ignored.
    """

    def __init__(self, prior: BetaPrior | None = None, memory: int = 20_000) -> None:
        self.prior = prior or BetaPrior()
        self.memory = memory
        self.impressions: dict[str, int] = {}
        self.clicks: dict[str, int] = {}
        self._lists: OrderedDict[str, dict[str, str]] = OrderedDict()

    def params(self, sources: Sequence[str]) -> tuple[list[float], list[float]]:
        """Posterior ``(alphas, betas)`` of ``sources``, aligned.

        >>> p = SourcePosteriors(); p.served("r1", [("i1", "ann"), ("i2", "ann")]); p.clicked("r1", "i2")
        True
        >>> p.params(["ann", "popular"])
        ([2.0, 1.0], [2.0, 1.0])
        """
        alphas = [self.prior.alpha + self.clicks.get(s, 0) for s in sources]
        betas = [self.prior.beta + max(self.impressions.get(s, 0) - self.clicks.get(s, 0), 0) for s in sources]
        return alphas, betas

    def served(self, request_id: str, items: Sequence[tuple[str, str]]) -> None:
        """Count one impression per ``(item_id, source)`` shown in list ``request_id``."""
        self._lists[request_id] = dict(items)
        while len(self._lists) > self.memory:
            self._lists.popitem(last=False)
        for _, source in items:
            self.impressions[source] = self.impressions.get(source, 0) + 1

    def clicked(self, request_id: str, item_id: str) -> bool:
        """Credit a click to the source that showed ``item_id`` in ``request_id`` (once); False if unknown."""
        shown = self._lists.get(request_id)
        source = shown.pop(item_id, None) if shown is not None else None
        if source is None:
            return False
        self.clicks[source] = self.clicks.get(source, 0) + 1
        return True


def source_queues(order: Sequence[int], sources: Sequence[str]) -> dict[str, list[int]]:
    """Candidate indices of ``order`` grouped by their (primary) source, each keeping the order.

    >>> source_queues([3, 0, 2], ["a", "b", "a", "b"])
    {'b': [3], 'a': [0, 2]}
    """
    out: dict[str, list[int]] = {}
    for j in order:
        out.setdefault(sources[j], []).append(j)
    return out


def thompson_slate(
    ranked: Sequence[int],
    sources: Sequence[str],
    k: int,
    posteriors: SourcePosteriors,
    rng: np.random.Generator,
    *,
    exploit: Sequence[int] = (),
    cats: I64 | None = None,
    cap: int | None = None,
) -> Slate:
    """Fill up to ``k`` slots from ``ranked`` (best first); each slot draws a source among those with an eligible
    candidate left, with probability :func:`win_probabilities` of their posteriors, and shows its best one.

    ``propensities[j]`` is the probability of the source drawn at slot ``j`` (the item given the source is
    deterministic); a slot is ``explored`` when its item is not in ``exploit`` (the greedy list).
    """
    queues = source_queues(ranked, sources)
    used: dict[int, int] = {}
    greedy = set(exploit)
    slate = Slate([], [], [])
    cache: dict[tuple[str, ...], F64] = {}
    while len(slate.order) < k:
        heads = _eligible_heads(queues, used, cats, cap)
        if not heads:
            break
        names = tuple(sorted(heads))
        probs = cache.get(names)
        if probs is None:
            probs = cache[names] = win_probabilities(*posteriors.params(names))
        s = int(rng.choice(len(names), p=probs))
        pick = heads[names[s]]
        queues[names[s]].remove(pick)
        if cats is not None:
            used[int(cats[pick])] = used.get(int(cats[pick]), 0) + 1
        slate.order.append(pick)
        slate.explored.append(pick not in greedy)
        slate.propensities.append(float(probs[s]))
    return slate


def _eligible_heads(
    queues: Mapping[str, list[int]], used: Mapping[int, int], cats: I64 | None, cap: int | None
) -> dict[str, int]:
    """Each source's best candidate that the category cap still allows."""
    heads: dict[str, int] = {}
    for name, queue in queues.items():
        for j in queue:
            if cap is None or cats is None or used.get(int(cats[j]), 0) < cap:
                heads[name] = j
                break
    return heads
