"""Population stability index (PSI) over reference histograms stored with a model version.

Binning: a feature's reference histogram has at most ``bins`` (default 10) right-closed bins whose interior
edges are the reference sample's deciles, de-duplicated, with open outer bins: ``(-inf, e1], (e1, e2], ...,
(e_m, +inf)``. Ties (a feature that is 0 for 60 % of rows) therefore fall into one bin instead of being split
arbitrarily, and a constant feature has two bins. Live values are counted into the same bins.

Epsilon: bin proportions are floored at ``epsilon`` (default 1e-4) before the logarithm, so an empty bin
gives a large but finite term instead of infinity; proportions are not renormalised afterwards.

``PSI = sum_i (a_i - e_i) * ln(a_i / e_i)`` over the bins, ``e`` the reference (expected) proportions and
``a`` the live (actual) ones. The usual reading: below 0.1 stable, 0.1 to 0.25 a moderate shift, above 0.25
a significant one. Non-finite values are left out of both histograms.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np
import numpy.typing as npt
from pydantic import BaseModel, ConfigDict, Field

F64 = npt.NDArray[np.float64]

DEFAULT_BINS = 10
EPSILON = 1e-4
STABLE, SIGNIFICANT = 0.1, 0.25
SCORE_NAMES: tuple[str, ...] = ("p_click", "p_purchase", "value")
"""Score distributions tracked beside the ranker features."""


def quantile_edges(values: npt.ArrayLike, bins: int = DEFAULT_BINS) -> F64:
    """Interior bin edges: the ``1/bins .. (bins-1)/bins`` quantiles of the finite values, de-duplicated.

    >>> quantile_edges(np.arange(1, 101), bins=4).tolist()
    [25.75, 50.5, 75.25]
    >>> quantile_edges([0, 0, 0, 0, 0, 0, 1, 2, 3, 4], bins=5).round(6).tolist()
    [0.0, 0.4, 2.2]
    >>> quantile_edges([7.0, 7.0, 7.0]).tolist()
    [7.0]
    """
    a = _finite(values)
    if a.size == 0:
        return np.zeros(0, np.float64)
    qs = np.linspace(0.0, 1.0, bins + 1)[1:-1]
    return np.unique(np.quantile(a, qs)) if qs.size else np.unique(a[:1])


def bin_counts(values: npt.ArrayLike, edges: npt.ArrayLike) -> npt.NDArray[np.int64]:
    """Counts of the finite values in the ``len(edges) + 1`` right-closed bins.

    >>> bin_counts([0.0, 0.0, 0.5, 1.0, 3.0, float("nan")], [0.0, 1.0]).tolist()
    [2, 2, 1]
    """
    e = np.asarray(edges, np.float64)
    idx = np.searchsorted(e, _finite(values), side="left")
    return np.bincount(idx, minlength=e.size + 1).astype(np.int64)


def proportions(counts: npt.ArrayLike, epsilon: float = EPSILON) -> F64:
    """Counts as proportions, each floored at ``epsilon`` (all ``epsilon`` when there are no counts).

    >>> proportions([3, 1, 0], epsilon=0.01).tolist()
    [0.75, 0.25, 0.01]
    """
    c = np.asarray(counts, np.float64)
    total = c.sum()
    p = c / total if total > 0 else np.zeros_like(c)
    return np.maximum(p, epsilon)


def psi(expected: npt.ArrayLike, actual: npt.ArrayLike, epsilon: float = EPSILON) -> float:
    """PSI between two proportion vectors over the same bins (both floored at ``epsilon``).

    Identical distributions give 0; a half-half split moving to 90/10 gives 0.879:

    >>> psi([0.5, 0.5], [0.5, 0.5])
    0.0
    >>> round(psi([0.5, 0.5], [0.9, 0.1]), 3)
    0.879
    >>> round(psi([0.25] * 4, [0.1, 0.2, 0.3, 0.4]), 4)
    0.2282

    It is symmetric in its arguments; an emptied bin costs ``(e - eps) ln(e / eps)`` (4.258 here, plus 0.347
    from the bin that took its mass) instead of infinity:

    >>> psi([0.1, 0.9], [0.9, 0.1]) == psi([0.9, 0.1], [0.1, 0.9])
    True
    >>> round(psi([0.5, 0.5], [1.0, 0.0]), 3)
    4.604
    """
    e = np.maximum(np.asarray(expected, np.float64), epsilon)
    a = np.maximum(np.asarray(actual, np.float64), epsilon)
    if e.shape != a.shape:
        raise ValueError(f"psi: {e.shape[0]} expected bins but {a.shape[0]} actual bins")
    return float(np.sum((a - e) * np.log(a / e)))


class Histogram(BaseModel):
    """One reference distribution: interior ``edges``, bin ``proportions`` (floored), and summary numbers."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    edges: list[float]
    proportions: list[float]
    count: int = Field(ge=0)
    mean: float
    std: float
    lo: float = Field(description="smallest reference value (plots)")
    hi: float = Field(description="largest reference value (plots)")

    @classmethod
    def of(cls, values: npt.ArrayLike, bins: int = DEFAULT_BINS, epsilon: float = EPSILON) -> Histogram:
        a = _finite(values)
        edges = quantile_edges(a, bins)
        stats = (float(a.mean()), float(a.std()), float(a.min()), float(a.max())) if a.size else (0.0,) * 4
        return cls(
            edges=edges.tolist(),
            proportions=proportions(bin_counts(a, edges), epsilon).tolist(),
            count=int(a.size),
            mean=stats[0],
            std=stats[1],
            lo=stats[2],
            hi=stats[3],
        )

    def live(self, values: npt.ArrayLike, epsilon: float = EPSILON) -> F64:
        """Proportions of ``values`` in this histogram's bins."""
        return proportions(bin_counts(values, self.edges), epsilon)

    def psi(self, values: npt.ArrayLike, epsilon: float = EPSILON) -> float | None:
        """PSI of ``values`` against this reference; None when either side has no finite value."""
        if self.count == 0 or _finite(values).size == 0:
            return None
        return psi(self.proportions, self.live(values, epsilon), epsilon)


class DriftReference(BaseModel):
    """The training window's distributions, stored in a version's manifest (``Manifest.drift``).

    ``histograms`` has one entry per ranker feature (the ONNX input columns) and per score in
    :data:`SCORE_NAMES`; ``value`` was computed with ``value_formula``.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")
    schema_version: int = 1
    bins: int = DEFAULT_BINS
    epsilon: float = EPSILON
    rows: int = Field(ge=0, description="training rows the histograms were built from")
    value_formula: str = "expected_revenue"
    histograms: dict[str, Histogram]

    @classmethod
    def build(
        cls,
        columns: Sequence[str],
        matrix: npt.ArrayLike,
        scores: Mapping[str, npt.ArrayLike],
        *,
        bins: int = DEFAULT_BINS,
        epsilon: float = EPSILON,
        value_formula: str = "expected_revenue",
    ) -> DriftReference:
        """Histograms of every column of ``matrix`` ``[N, len(columns)]`` and of every score array."""
        x = np.asarray(matrix, np.float64).reshape(-1, len(columns))
        hists = {name: Histogram.of(x[:, j], bins, epsilon) for j, name in enumerate(columns)}
        hists.update({name: Histogram.of(v, bins, epsilon) for name, v in scores.items()})
        return cls(bins=bins, epsilon=epsilon, rows=int(x.shape[0]), value_formula=value_formula, histograms=hists)

    def psi(self, samples: Mapping[str, npt.ArrayLike]) -> dict[str, float]:
        """PSI per name present both here and in ``samples`` (names with no finite live value are left out)."""
        out: dict[str, float] = {}
        for name, values in samples.items():
            hist = self.histograms.get(name)
            value = hist.psi(values, self.epsilon) if hist is not None else None
            if value is not None and math.isfinite(value):
                out[name] = value
        return out


def level(value: float) -> str:
    """``stable`` (< 0.1), ``moderate`` (< 0.25) or ``significant``.

    >>> [level(v) for v in (0.02, 0.1, 0.3)]
    ['stable', 'moderate', 'significant']
    """
    return "stable" if value < STABLE else "moderate" if value < SIGNIFICANT else "significant"


def _finite(values: npt.ArrayLike) -> F64:
    a = np.asarray(values, np.float64).ravel()
    return a[np.isfinite(a)]
