"""Peer recommenders evaluated in the same harness: popularity, ALS (``implicit``) and EASE."""

from __future__ import annotations

import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np
import scipy.sparse as sp

from models.data import FloatArray, IntArray
from models.errors import ModelError
from models.evaluate import EvalResult, evaluate
from models.splits import Split, user_item_matrix


class Recommender(Protocol):
    """A model fitted on a binary user x item matrix that scores every item for a batch of users."""

    def fit(self, matrix: sp.csr_matrix) -> None:
        """Fit from scratch on ``matrix``; calling it again discards the previous fit."""
        ...

    def score(self, users: IntArray) -> FloatArray:
        """Return ``[len(users), n_items]`` scores; must not mutate the fitted state."""
        ...


class Popularity:
    """Scores every item by its number of interactions in the fit matrix."""

    def __init__(self) -> None:
        self._counts: FloatArray | None = None

    def fit(self, matrix: sp.csr_matrix) -> None:
        self._counts = np.asarray(matrix.sum(axis=0), dtype=np.float32).ravel()

    def score(self, users: IntArray) -> FloatArray:
        if self._counts is None:
            raise ModelError("Popularity.score called before fit")
        return np.broadcast_to(self._counts, (users.shape[0], self._counts.shape[0]))


class Ease:
    """EASE (Steck 2019): closed-form item-item ridge regression with a zero diagonal."""

    def __init__(self, l2: float = 500.0) -> None:
        self.l2 = l2
        self._x: sp.csr_matrix | None = None
        self._b: FloatArray | None = None

    def fit(self, matrix: sp.csr_matrix) -> None:
        gram = (matrix.T @ matrix).toarray().astype(np.float64)
        gram[np.diag_indices_from(gram)] += self.l2
        p = np.linalg.inv(gram)
        b = -p / np.diag(p)[None, :]
        b[np.diag_indices_from(b)] = 0.0
        self._x, self._b = matrix, b.astype(np.float32)

    def score(self, users: IntArray) -> FloatArray:
        if self._x is None or self._b is None:
            raise ModelError("Ease.score called before fit")
        return np.asarray(self._x[users] @ self._b, dtype=np.float32)


class Als:
    """Implicit-feedback ALS from the ``implicit`` library (CPU), seeded."""

    def __init__(
        self, factors: int = 64, regularization: float = 0.05, alpha: float = 1.0, iterations: int = 15, seed: int = 0
    ) -> None:
        self.factors, self.regularization, self.alpha = factors, regularization, alpha
        self.iterations, self.seed = iterations, seed
        self._users: FloatArray | None = None
        self._items: FloatArray | None = None

    def fit(self, matrix: sp.csr_matrix) -> None:
        from implicit.cpu.als import AlternatingLeastSquares

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # implicit warns about BLAS threading, which we do not control here
            model = AlternatingLeastSquares(
                factors=self.factors,
                regularization=self.regularization,
                alpha=self.alpha,
                iterations=self.iterations,
                random_state=self.seed,
                num_threads=1,  # one thread keeps the factorisation bit-reproducible
            )
            model.fit(matrix.tocsr(), show_progress=False)
        self._users = np.asarray(model.user_factors, dtype=np.float32)
        self._items = np.asarray(model.item_factors, dtype=np.float32)

    def score(self, users: IntArray) -> FloatArray:
        if self._users is None or self._items is None:
            raise ModelError("Als.score called before fit")
        return self._users[users] @ self._items.T


@dataclass(frozen=True)
class PeerRun:
    """A peer tuned on validation and evaluated on test after a refit on train plus validation."""

    name: str
    params: dict[str, float]
    valid_ndcg: float
    test: EvalResult


def tune_and_test(
    name: str,
    factory: Callable[..., Recommender],
    grid: Sequence[Mapping[str, float]],
    split: Split,
    categories: FloatArray,
) -> PeerRun:
    """Pick the grid point with the best validation NDCG@10, refit on train+valid, evaluate on test."""
    best: tuple[float, Mapping[str, float]] | None = None
    train = user_item_matrix(split.history("valid"), split.n_users, split.n_items)
    for params in grid:
        model = factory(**params)
        model.fit(train)
        ndcg = evaluate(model.score, split, "valid", categories).metrics["ndcg@10"]
        if best is None or ndcg > best[0]:
            best = (ndcg, params)
    if best is None:
        raise ModelError(f"{name}: empty hyper-parameter grid")
    model = factory(**best[1])
    model.fit(user_item_matrix(split.history("test"), split.n_users, split.n_items))
    return PeerRun(name, dict(best[1]), best[0], evaluate(model.score, split, "test", categories))


EASE_GRID: tuple[dict[str, float], ...] = tuple({"l2": v} for v in (50.0, 100.0, 200.0, 400.0, 800.0, 1600.0))
ALS_GRID: tuple[dict[str, float], ...] = tuple(
    {"factors": f, "regularization": r, "alpha": a} for f in (32, 64) for r in (0.05, 0.5) for a in (1.0, 10.0)
)
