"""Offline drift report: PSI of the logged impressions (features and scores served) against a version's reference.

The PSI is the worker's (:mod:`models.drift`: the same bins, epsilon and formula); the rows are every served
item of the impressions logged by ``version``, or a uniform sample of ``max_rows`` of them.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from itertools import pairwise
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import orjson

from models.drift import SCORE_NAMES, DriftReference, level, psi
from state.reservoir import Reservoir
from streams.records import Impression


@dataclass(frozen=True)
class FeatureDrift:
    """One feature's or score's PSI, its reading, and both bin distributions (for plots and the JSON)."""

    name: str
    psi: float
    level: str
    live_rows: int
    edges: list[float]
    reference: list[float]
    live: list[float]
    reference_mean: float
    live_mean: float


@dataclass
class DriftReport:
    version: str
    source: str
    rows: int
    impressions: int
    reference_rows: int
    bins: int
    epsilon: float
    features: list[FeatureDrift] = field(default_factory=list)
    skipped: dict[str, int] = field(default_factory=dict)

    def worst(self, n: int = 5) -> list[FeatureDrift]:
        return sorted(self.features, key=lambda f: -f.psi)[:n]

    def to_json(self) -> dict[str, Any]:
        out = asdict(self)
        out["features"] = {f.name: {k: v for k, v in asdict(f).items() if k != "name"} for f in self.features}
        return out


def impression_rows(imp: Impression) -> tuple[tuple[str, ...], npt.NDArray[np.float64]] | None:
    """``(columns, rows)`` of one logged list: its feature rows and each item's scores; None when unscored.

    >>> from datetime import UTC, datetime
    >>> from streams.records import RecItem
    >>> it = RecItem(item_id="i", position=0, score=1.0, source="ann", reason="r", p_click=0.5, p_purchase=0.1,
    ...              value=2.0)
    >>> imp = Impression(correlation_id="c", user_id="u", items=[it], feature_columns=["f"], features=[[3.0]],
    ...                  served_at=datetime(2026, 1, 1, tzinfo=UTC))
    >>> cols, rows = impression_rows(imp)
    >>> cols, rows.tolist()
    (('f', 'p_click', 'p_purchase', 'value'), [[3.0, 0.5, 0.1, 2.0]])
    """
    if not imp.feature_columns or not imp.features or len(imp.features) != len(imp.items):
        return None
    nan = float("nan")
    scores = [[nan if v is None else v for v in (it.p_click, it.p_purchase, it.value)] for it in imp.items]
    rows = np.hstack([np.asarray(imp.features, np.float64), np.asarray(scores, np.float64)])
    return (*imp.feature_columns, *SCORE_NAMES), rows


def collect(
    impressions: Iterable[Impression], version: str, *, max_rows: int = 200_000, seed: int = 0
) -> tuple[dict[str, npt.NDArray[np.float64]], int, Counter[str]]:
    """The served rows of ``version``'s scored impressions by column, their count, and what was skipped why."""
    skipped: Counter[str] = Counter()
    columns: tuple[str, ...] | None = None
    window: Reservoir | None = None
    used = 0
    for imp in impressions:
        if imp.model_version != version:
            skipped[f"version:{imp.model_version}"] += 1
            continue
        got = impression_rows(imp)
        if got is None:
            skipped["unscored"] += 1
            continue
        cols, rows = got
        if columns is None:
            columns, window = cols, Reservoir(max_rows, len(cols), np.random.default_rng(seed))
        if cols != columns or window is None:
            skipped["other_columns"] += 1
            continue
        window.add(rows)
        used += 1
    if window is None or columns is None:
        return {}, 0, skipped
    sample = window.sample().astype(np.float64)
    return {name: sample[:, j] for j, name in enumerate(columns)}, used, skipped


def drift_report(
    reference: DriftReference, samples: Mapping[str, npt.ArrayLike], *, version: str, source: str, impressions: int = 0
) -> DriftReport:
    """PSI of every sampled column the reference knows, worst first."""
    report = DriftReport(
        version=version,
        source=source,
        rows=max((len(np.asarray(v)) for v in samples.values()), default=0),
        impressions=impressions,
        reference_rows=reference.rows,
        bins=reference.bins,
        epsilon=reference.epsilon,
    )
    for name, values in samples.items():
        hist = reference.histograms.get(name)
        a = np.asarray(values, np.float64)
        a = a[np.isfinite(a)]
        if hist is None or a.size == 0 or hist.count == 0:
            continue
        live = hist.live(a, reference.epsilon)
        value = psi(hist.proportions, live, reference.epsilon)
        report.features.append(
            FeatureDrift(
                name, value, level(value), int(a.size), hist.edges, hist.proportions, live.tolist(), hist.mean,
                float(a.mean()),
            )
        )  # fmt: skip
    report.features.sort(key=lambda f: -f.psi)
    return report


def plot_drift(report: DriftReport, path: Path, n: int = 9) -> None:
    """A PNG: PSI of every column (bars, thresholds marked) and the bin distributions of the ``n - 1`` worst."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    worst = report.worst(n - 1)
    cols = 3
    rows = 1 + (len(worst) + cols - 1) // cols
    fig = plt.figure(figsize=(14, 3.2 * rows))
    top = fig.add_subplot(rows, 1, 1)
    names = [f.name for f in report.features]
    top.bar(range(len(names)), [f.psi for f in report.features], color=[_colour(f.level) for f in report.features])
    top.set_xticks(range(len(names)), names, rotation=75, fontsize=7)
    for y, style in ((0.1, ":"), (0.25, "--")):
        top.axhline(y, color="grey", linestyle=style, linewidth=1)
    top.set_ylabel("PSI")
    top.set_title(f"PSI of {report.version} vs its training reference ({report.rows} served rows, {report.source})")
    for i, f in enumerate(worst):
        ax = fig.add_subplot(rows, cols, cols + i + 1)
        x = np.arange(len(f.reference))
        ax.bar(x - 0.2, f.reference, 0.4, label="training")
        ax.bar(x + 0.2, f.live, 0.4, label="live")
        ax.set_xticks(x, _bin_labels(f.edges), rotation=60, fontsize=6)
        ax.set_title(f"{f.name}: PSI {f.psi:.3f} ({f.level})", fontsize=9)
        if i == 0:
            ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def _colour(lvl: str) -> str:
    return {"stable": "tab:green", "moderate": "tab:orange"}.get(lvl, "tab:red")


def _bin_labels(edges: list[float]) -> list[str]:
    """``<=e1``, ``e1-e2`` ... ``>em``.

    >>> _bin_labels([0.0, 1.5])
    ['<=0', '0-1.5', '>1.5']
    """
    if not edges:
        return ["all"]
    mid = [f"{a:.3g}-{b:.3g}" for a, b in pairwise(edges)]
    return [f"<={edges[0]:.3g}", *mid, f">{edges[-1]:.3g}"]


def write_snapshot(path: Path, version: str, samples: Mapping[str, npt.ArrayLike], taken_at: float) -> None:
    """A worker's live window as JSON (``version``, ``taken_at``, ``samples`` by column), replaced atomically."""
    body = {
        "version": version,
        "taken_at": taken_at,
        "samples": {k: np.asarray(v).tolist() for k, v in samples.items()},
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(orjson.dumps(body))
    tmp.replace(path)


def read_snapshot(path: Path) -> tuple[str, dict[str, npt.NDArray[np.float64]]]:
    """``(version, samples)`` of a snapshot written by :func:`write_snapshot`."""
    from models.errors import DataError

    try:
        body = orjson.loads(path.read_bytes())
        samples = {str(k): np.asarray(v, np.float64) for k, v in body["samples"].items()}
        return str(body["version"]), samples
    except (OSError, orjson.JSONDecodeError, KeyError, TypeError, AttributeError) as exc:
        raise DataError(f"{path}: not a drift snapshot: {exc}") from exc
