"""Scoring: the ``Ranker`` protocol (ONNX and a deterministic fake) and the typed registry of value formulas."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, get_args

import numpy as np
import numpy.typing as npt

from agents.funnel.errors import RankerError
from models.ranker_features import SERVING_FEATURES
from streams.errors import ConfigError
from streams.settings import ValueFormula

F32 = npt.NDArray[np.float32]
F64 = npt.NDArray[np.float64]


class Ranker(Protocol):
    """Click and purchase probabilities for a batch of feature rows."""

    def score(self, matrix: F32) -> tuple[F32, F32]:
        """``(p_click, p_purchase)``, each ``[N]``, for ``matrix`` ``[N, F]`` in the model's column order.

        ``p_purchase`` is p(click and purchase) = p_click x p(purchase | click). Raises ``RankerError`` on
        failure; must not keep or modify ``matrix``.
        """
        ...


class OnnxRanker:
    """The exported multi-task ranker (input ``features``, outputs ``p_click`` and ``p_purchase``)."""

    def __init__(self, session: Any) -> None:
        self.session = session
        self.n_features = session.get_inputs()[0].shape[1]

    @classmethod
    def open(cls, path: Path) -> OnnxRanker:
        """A ranker from an ONNX file, on the registry's one-thread CPU session."""
        from models.errors import RegistryError
        from state.registry import open_onnx

        try:
            return cls(open_onnx(path))
        except RegistryError as exc:
            raise RankerError(f"not a loadable ONNX ranker: {exc}") from exc

    def score(self, matrix: F32) -> tuple[F32, F32]:
        if matrix.ndim != 2 or (isinstance(self.n_features, int) and matrix.shape[1] != self.n_features):
            raise RankerError(f"ranker wants [N, {self.n_features}] features, got {list(matrix.shape)}")
        try:
            p_click, p_purchase = self.session.run(["p_click", "p_purchase"], {"features": matrix})
        except Exception as exc:  # onnxruntime raises its own untyped errors
            raise RankerError(f"ONNX ranker failed on a [{matrix.shape[0]}, {matrix.shape[1]}] batch: {exc}") from exc
        return np.asarray(p_click, np.float32), np.asarray(p_purchase, np.float32)


class FakeRanker:
    """Deterministic stand-in: ``p_click = sigmoid(x_tt_dot + 20 (i_ctr - 0.05))``, ``p_purchase = p_click * i_cvr``.

    >>> m = np.zeros((1, len(SERVING_FEATURES)), np.float32)
    >>> m[0, SERVING_FEATURES.index("i_cvr")] = 0.5
    >>> [round(float(p[0]), 3) for p in FakeRanker().score(m)]
    [0.269, 0.134]
    """

    def __init__(self, columns: Sequence[str] = SERVING_FEATURES) -> None:
        cols = list(columns)
        self._idx = [cols.index(n) if n in cols else -1 for n in ("x_tt_dot", "i_ctr", "i_cvr")]

    def _col(self, matrix: F32, j: int) -> F64:
        return matrix[:, j].astype(np.float64) if j >= 0 else np.zeros(matrix.shape[0])

    def score(self, matrix: F32) -> tuple[F32, F32]:
        tt, ctr, cvr = (self._col(matrix, j) for j in self._idx)
        p_click = 1.0 / (1.0 + np.exp(-(tt + 20.0 * (ctr - 0.05))))
        return p_click.astype(np.float32), (p_click * cvr).astype(np.float32)


FormulaName = ValueFormula  # declared once, in the settings tree
FORMULA_NAMES: tuple[str, ...] = get_args(FormulaName)


@dataclass(frozen=True, slots=True)
class ValueConfig:
    """A surface's value formula and its parameters; an unknown name fails at start-up.

    ``weighted`` is ``a * p_click + b * p_purchase + c * price / (price + price_scale)`` (the price term is
    a saturating normalisation into [0, 1), independent of the candidate set).
    """

    formula: FormulaName = "expected_revenue"
    a: float = 1.0
    b: float = 0.0
    c: float = 0.0
    price_scale: float = 100.0

    def __post_init__(self) -> None:
        if self.formula not in FORMULAS:
            raise ConfigError(f"unknown value formula {self.formula!r}; valid formulas: {', '.join(FORMULA_NAMES)}")
        if self.price_scale <= 0:
            raise ConfigError(f"price_scale must be > 0, got {self.price_scale}")

    def value(self, p_click: npt.ArrayLike, p_purchase: npt.ArrayLike, price: npt.ArrayLike) -> F64:
        pc, pp, pr = (np.asarray(x, dtype=np.float64) for x in (p_click, p_purchase, price))
        return FORMULAS[self.formula](pc, pp, pr, self)


def click(p_click: F64, p_purchase: F64, price: F64, cfg: ValueConfig) -> F64:
    """Expected clicks.

    >>> ValueConfig("click").value([0.2], [0.05], [10.0]).tolist()
    [0.2]
    """
    return p_click


def purchase(p_click: F64, p_purchase: F64, price: F64, cfg: ValueConfig) -> F64:
    """Expected purchases, p(click) x p(purchase | click).

    >>> ValueConfig("purchase").value([0.2], [0.05], [10.0]).tolist()
    [0.05]
    """
    return p_purchase


def expected_revenue(p_click: F64, p_purchase: F64, price: F64, cfg: ValueConfig) -> F64:
    """p(click) x p(purchase | click) x price, i.e. ``p_purchase * price``.

    >>> ValueConfig("expected_revenue").value([0.2, 0.5], [0.05, 0.01], [10.0, 100.0]).tolist()
    [0.5, 1.0]
    """
    return p_purchase * price


def weighted(p_click: F64, p_purchase: F64, price: F64, cfg: ValueConfig) -> F64:
    """``a * p_click + b * p_purchase + c * price / (price + price_scale)``.

    >>> ValueConfig("weighted", a=1.0, b=10.0, c=0.5, price_scale=100.0).value([0.2], [0.05], [100.0]).tolist()
    [0.95]
    """
    return cfg.a * p_click + cfg.b * p_purchase + cfg.c * price / (price + cfg.price_scale)


ValueFn = Callable[[F64, F64, F64, ValueConfig], F64]
FORMULAS: dict[FormulaName, ValueFn] = {
    "click": click,
    "purchase": purchase,
    "expected_revenue": expected_revenue,
    "weighted": weighted,
}
