"""A/B experiments: deterministic bucketing by user and the per-variant report with confidence intervals."""

from __future__ import annotations

import hashlib
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from statistics import NormalDist
from typing import Literal, Protocol

import numpy as np

from streams.settings import Experiment, ExperimentSettings, Variant

__all__ = ["Experiment", "ExperimentSettings", "Variant", "assign", "bucket", "experiment_report"]


def bucket(experiment: str, user_id: str) -> float:
    """A uniform number in [0, 1) from SHA-256 of (experiment, user): the same in every process and run.

    Salting with the experiment name makes assignments of different experiments independent.

    >>> round(bucket("ranker-v2", "u42"), 4)
    0.8832
    >>> bucket("ranker-v2", "u42") == bucket("ranker-v2", "u42") != bucket("ranker-v3", "u42")
    True
    """
    digest = hashlib.sha256(f"{experiment}\x1f{user_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2.0**64


def assign(experiment: Experiment, user_id: str) -> Variant:
    """The variant ``user_id`` sees: the one whose cumulative share interval holds the user's bucket.

    >>> exp = Experiment(name="ranker-v2", variants=(Variant(name="control", share=0.5),
    ...                                              Variant(name="treatment", share=0.5, model_version="v2")))
    >>> assign(exp, "u42").name  # bucket 0.8832 is past control's 0.5
    'treatment'
    >>> disabled = exp.model_copy(update={"enabled": False})
    >>> assign(disabled, "u1").name
    'control'
    """
    if not experiment.enabled:
        return experiment.control
    u = bucket(experiment.name, user_id)
    edge = 0.0
    for v in experiment.variants:
        edge += v.share
        if u < edge:
            return v
    return experiment.variants[-1]  # u is within rounding of 1.0


def variant_label(experiment: Experiment, variant: Variant) -> str:
    """The ``variant`` recorded on responses and impressions: ``experiment:variant``.

    >>> variant_label(Experiment(name="e", variants=(Variant(name="a", share=1.0),)), Variant(name="a", share=1.0))
    'e:a'
    """
    return f"{experiment.name}:{variant.name}"


class ServedList(Protocol):
    """What the report needs of an impression (``streams.records.Impression`` satisfies it)."""

    @property
    def correlation_id(self) -> str: ...
    @property
    def variant(self) -> str: ...


class Outcome(Protocol):
    """What the report needs of an event (``streams.records.Event`` satisfies it)."""

    @property
    def type(self) -> str: ...
    @property
    def request_id(self) -> str | None: ...
    @property
    def price(self) -> float | None: ...


@dataclass(frozen=True, slots=True)
class Estimate:
    """A point estimate and its two-sided confidence interval."""

    value: float
    low: float
    high: float


@dataclass(frozen=True, slots=True)
class VariantReport:
    """Per served list: ``ctr`` is the share with a click, ``conversion`` with a purchase; revenue is per list."""

    variant: str
    requests: int
    clicked: int
    converted: int
    revenue: float
    ctr: Estimate
    conversion: Estimate
    revenue_per_request: Estimate


@dataclass(frozen=True, slots=True)
class ExperimentReport:
    """Every variant's row, plus clicks and purchases that named no logged list."""

    variants: tuple[VariantReport, ...]
    unattributed_events: int
    confidence: float


def wilson(successes: int, n: int, confidence: float = 0.95) -> Estimate:
    """Wilson score interval of a proportion (sound near 0 and 1 and for small ``n``).

    >>> e = wilson(2, 4)
    >>> round(e.value, 4), round(e.low, 4), round(e.high, 4)
    (0.5, 0.15, 0.85)
    >>> wilson(0, 0)
    Estimate(value=nan, low=nan, high=nan)
    """
    if n == 0:
        return Estimate(math.nan, math.nan, math.nan)
    z = NormalDist().inv_cdf(0.5 + confidence / 2)
    p = successes / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return Estimate(p, max(0.0, centre - half), min(1.0, centre + half))


Method = Literal["normal", "bootstrap"]


def mean_interval(
    values: Sequence[float],
    confidence: float = 0.95,
    *,
    method: Method = "normal",
    seed: int = 0,
    resamples: int = 2000,
) -> Estimate:
    """Mean with a normal (sample standard error) or percentile-bootstrap interval; the bootstrap is seeded.

    >>> e = mean_interval([0.0, 0.0, 10.0, 30.0])
    >>> round(e.value, 3), round(e.low, 3), round(e.high, 3)
    (10.0, -3.859, 23.859)
    """
    a = np.asarray(values, dtype=np.float64)
    if a.size == 0:
        return Estimate(math.nan, math.nan, math.nan)
    mean = float(a.mean())
    if a.size == 1:
        return Estimate(mean, mean, mean)
    if method == "normal":
        half = NormalDist().inv_cdf(0.5 + confidence / 2) * float(a.std(ddof=1)) / math.sqrt(a.size)
        return Estimate(mean, mean - half, mean + half)
    means = _bootstrap_means(a, np.random.default_rng(seed), resamples)
    low, high = np.quantile(means, [(1 - confidence) / 2, (1 + confidence) / 2])
    return Estimate(mean, float(low), float(high))


def _bootstrap_means(a: np.ndarray, rng: np.random.Generator, resamples: int, cells: int = 4_000_000) -> np.ndarray:
    """Means of ``resamples`` resamples with replacement, drawn in chunks of about ``cells`` indices."""
    per_chunk = max(1, cells // a.size)
    out = [
        a[rng.integers(0, a.size, size=(min(per_chunk, resamples - done), a.size))].mean(axis=1)
        for done in range(0, resamples, per_chunk)
    ]
    return np.concatenate(out)


@dataclass
class _Tally:
    clicked: set[str]
    converted: set[str]
    revenue: dict[str, float]


def experiment_report(
    impressions: Iterable[ServedList],
    events: Iterable[Outcome],
    *,
    confidence: float = 0.95,
    revenue_method: Method = "bootstrap",
    seed: int = 0,
) -> ExperimentReport:
    """Per-variant CTR, conversion and revenue per served list, attributing events by ``request_id``.

    A list counts once however many of its items were clicked or bought; a purchase without a price adds
    no revenue. Events whose ``request_id`` names no impression are counted in ``unattributed_events``.
    Variants are reported in order of first appearance.
    """
    variant_of: dict[str, str] = {}
    for imp in impressions:
        variant_of.setdefault(imp.correlation_id, imp.variant)
    tally = _Tally(set(), set(), {})
    unattributed = 0
    for ev in events:
        if ev.type not in ("click", "purchase"):
            continue
        if ev.request_id is None or ev.request_id not in variant_of:
            unattributed += 1
        elif ev.type == "click":
            tally.clicked.add(ev.request_id)
        else:
            tally.converted.add(ev.request_id)
            tally.revenue[ev.request_id] = tally.revenue.get(ev.request_id, 0.0) + (ev.price or 0.0)
    lists: dict[str, list[str]] = {}
    for cid, variant in variant_of.items():
        lists.setdefault(variant, []).append(cid)
    rows = tuple(
        _variant_row(v, cids, tally, confidence, method=revenue_method, seed=seed) for v, cids in lists.items()
    )
    return ExperimentReport(rows, unattributed, confidence)


def _variant_row(
    variant: str, cids: list[str], tally: _Tally, confidence: float, *, method: Method, seed: int
) -> VariantReport:
    n = len(cids)
    clicked = sum(1 for c in cids if c in tally.clicked)
    converted = sum(1 for c in cids if c in tally.converted)
    revenue = [tally.revenue.get(c, 0.0) for c in cids]
    return VariantReport(
        variant=variant,
        requests=n,
        clicked=clicked,
        converted=converted,
        revenue=math.fsum(revenue),
        ctr=wilson(clicked, n, confidence),
        conversion=wilson(converted, n, confidence),
        revenue_per_request=mean_interval(revenue, confidence, method=method, seed=seed),
    )
