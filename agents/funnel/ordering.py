"""Ordering: MMR diversity with category caps, epsilon-greedy exploration slots with exact propensities.

Thompson sampling over candidate sources lives in ``agents.funnel.thompson``; :func:`resolve_knobs` picks the
policy a request runs with.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from streams.records import ContextValue
from streams.settings import ExplorationPolicy

F32 = npt.NDArray[np.float32]
F64 = npt.NDArray[np.float64]
I64 = npt.NDArray[np.int64]

POLICIES: tuple[ExplorationPolicy, ...] = ("epsilon", "thompson", "none")


@dataclass(frozen=True, slots=True)
class OrderingConfig:
    """Defaults and the limits requests may move them within (``context`` keys ``mmr_lambda``, ``epsilon``,
    ``exploration``: a policy name among ``allowed_policies``).

    ``explore_pool`` is how many of the best candidates outside the exploit list an exploration slot draws
    from (uniformly); ``category_cap`` is the most items of one category in a list (None: no cap).
    """

    mmr_lambda: float = 0.8
    min_lambda: float = 0.5
    max_lambda: float = 1.0
    epsilon: float = 0.0
    max_epsilon: float = 0.2
    explore_pool: int = 50
    category_cap: int | None = None
    max_k: int = 100
    policy: ExplorationPolicy = "epsilon"
    allowed_policies: tuple[ExplorationPolicy, ...] = POLICIES

    def __post_init__(self) -> None:
        ok = (
            self.policy in self.allowed_policies
            and set(self.allowed_policies) <= set(POLICIES)
            and 0.0 <= self.min_lambda <= self.mmr_lambda <= self.max_lambda <= 1.0
            and 0.0 <= self.epsilon <= self.max_epsilon <= 1.0
            and self.explore_pool >= 1
            and self.max_k >= 1
            and (self.category_cap is None or self.category_cap >= 1)
        )
        if not ok:
            raise ValueError(f"inconsistent ordering config: {self}")


@dataclass(frozen=True, slots=True)
class Knobs:
    """The values one request runs with, after clamping."""

    k: int
    mmr_lambda: float
    epsilon: float
    policy: ExplorationPolicy = "epsilon"


def _clamp(v: float, lo: float, hi: float) -> float:
    return min(max(v, lo), hi)


def resolve_knobs(k: int, context: Mapping[str, ContextValue], cfg: OrderingConfig) -> Knobs:
    """Request overrides clamped to the configured limits (non-numeric overrides and policies outside
    ``allowed_policies`` are ignored).

    >>> cfg = OrderingConfig(epsilon=0.05, allowed_policies=("epsilon", "none"))
    >>> resolve_knobs(500, {"mmr_lambda": 0.1, "epsilon": "lots", "exploration": "thompson"}, cfg)
    Knobs(k=100, mmr_lambda=0.5, epsilon=0.05, policy='epsilon')
    >>> resolve_knobs(5, {"exploration": "none"}, cfg).policy
    'none'
    """
    lam, eps, pol = context.get("mmr_lambda"), context.get("epsilon"), context.get("exploration")
    lam_v = float(lam) if isinstance(lam, int | float) and not isinstance(lam, bool) else cfg.mmr_lambda
    eps_v = float(eps) if isinstance(eps, int | float) and not isinstance(eps, bool) else cfg.epsilon
    policy = pol if pol in cfg.allowed_policies else cfg.policy
    return Knobs(
        int(_clamp(k, 1, cfg.max_k)),
        _clamp(lam_v, cfg.min_lambda, cfg.max_lambda),
        _clamp(eps_v, 0.0, cfg.max_epsilon),
        policy,
    )


def category_codes(categories: Sequence[str]) -> I64:
    """Small integer per category (for caps).

    >>> category_codes(["b", "a", "b"]).tolist()
    [1, 0, 1]
    """
    _, codes = np.unique(np.asarray(categories, dtype=object).astype(str), return_inverse=True)
    return codes.astype(np.int64).reshape(-1)


def mmr(
    values: F64, unit: F32 | None, k: int, lam: float, *, cats: I64 | None = None, cap: int | None = None
) -> list[int]:
    """Greedy maximal marginal relevance: pick ``argmax lam * rel - (1 - lam) * max cosine to the picked``.

    ``rel`` is ``values`` min-max scaled to [0, 1] so ``lam`` does not depend on the value's units; ties go to
    the lower index, so ``lam = 1`` (or no embeddings) is exactly the stable score order. With ``cap``, no
    category appears more than ``cap`` times (the list may then be shorter than ``k``).

    >>> v = np.array([1.0, 0.9, 0.5])
    >>> e = np.array([[1, 0], [1, 0], [0, 1]], dtype=np.float32)
    >>> mmr(v, e, 3, 1.0), mmr(v, e, 2, 0.5)
    ([0, 1, 2], [0, 2])
    """
    n = len(values)
    span = float(values.max() - values.min()) if n else 0.0
    rel = (values - values.min()) / span if span > 0 else np.zeros(n)
    avail = np.ones(n, dtype=bool)
    max_sim = np.full(n, -1.0)  # -1 before any pick shifts every score equally: no effect on the argmax
    counts = np.zeros(int(cats.max()) + 1 if cats is not None and n else 0, dtype=np.int64)
    picked: list[int] = []
    diverse = unit is not None and lam < 1.0
    base = lam * rel  # the same products every pass
    blocked = np.zeros(n)  # -inf where no longer available: adding 0.0 leaves every other score as it was
    # reused every pass, so the loop allocates no arrays; similarities in the embeddings' own precision
    score, sims = np.empty(n), np.empty(n, unit.dtype if unit is not None else np.float32)
    for _ in range(min(k, n)):
        if diverse:  # base - (1 - lam) * max_sim + blocked, in place
            np.multiply(max_sim, -(1.0 - lam), out=score)
            score += base
        else:
            score[:] = rel
        score += blocked
        j = int(score.argmax())
        if not avail[j]:
            break
        picked.append(j)
        avail[j], blocked[j] = False, -np.inf
        if cap is not None and cats is not None:
            counts[cats[j]] += 1
            if counts[cats[j]] >= cap:
                avail &= cats != cats[j]
                blocked[~avail] = -np.inf
        if diverse:
            assert unit is not None
            np.matmul(unit, unit[j], out=sims)
            np.maximum(max_sim, sims, out=max_sim)
    return picked


@dataclass(frozen=True, slots=True)
class Slate:
    """Candidate indices in display order, whether each slot explored, and the probability of each placement.

    ``propensities[j]`` is the probability that the policy put ``order[j]`` at slot ``j`` given the candidates
    and the slots before it; the probability of the whole slate is their product.
    """

    order: list[int]
    explored: list[bool]
    propensities: list[float]


def greedy_slate(order: Sequence[int]) -> Slate:
    """A deterministic slate: every placement has probability 1."""
    return Slate(list(order), [False] * len(order), [1.0] * len(order))


def explore_pool(values: F64, exploit: Sequence[int], size: int) -> I64:
    """The ``size`` best candidates (by value, stable) not in ``exploit``."""
    rest = np.ones(len(values), dtype=bool)
    rest[list(exploit)] = False
    best = np.argsort(-values, kind="stable")
    return best[rest[best]][:size].astype(np.int64)


def epsilon_greedy(
    exploit: Sequence[int],
    pool: I64,
    epsilon: float,
    rng: np.random.Generator,
    *,
    cats: I64 | None = None,
    cap: int | None = None,
) -> Slate:
    """Fill ``len(exploit)`` slots: each slot, with probability ``epsilon``, shows a uniform draw from what is
    left of ``pool`` (respecting ``cap`` against the items shown so far), otherwise the next exploit item.

    The logged propensity is the probability actually used: ``1 - epsilon`` for an exploit item (1 when the
    pool is empty), ``epsilon / len(pool left)`` for an explored one.

    >>> s = epsilon_greedy([0, 1], np.array([2, 3]), 0.5, np.random.default_rng(0))
    >>> s.order, s.propensities
    ([0, 2], [0.5, 0.25])
    """
    left = [int(i) for i in pool]
    shown: list[int] = []
    explored: list[bool] = []
    probs: list[float] = []
    ptr = 0
    for _ in range(len(exploit)):
        eligible = left
        if cap is not None and cats is not None:
            used = np.bincount(cats[shown], minlength=int(cats.max()) + 1) if shown else None
            eligible = [i for i in left if used is None or used[cats[i]] < cap]
        if eligible and rng.random() < epsilon:
            pick = eligible[int(rng.integers(len(eligible)))]
            probs.append(epsilon / len(eligible))  # before ``left`` (possibly the same list) shrinks
            left.remove(pick)
            shown.append(pick)
            explored.append(True)
        else:
            shown.append(exploit[ptr])
            ptr += 1
            explored.append(False)
            probs.append(1.0 - epsilon if eligible else 1.0)
    return Slate(shown, explored, probs)
