"""Live drift in a serving worker: a reservoir of served ranker rows and scores, PSI against the version's reference."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Protocol

import numpy as np

from agents.funnel.outcome import FunnelResult
from models.drift import SCORE_NAMES, DriftReference
from models.drift_report import write_snapshot
from state.reservoir import Reservoir
from streams.metrics import WorkerMetrics
from streams.settings import DriftSettings

log = logging.getLogger(__name__)


class DriftRecorder(Protocol):
    """What the serving agent feeds; ``record`` is on the hot path and must stay a few microseconds."""

    def record(self, result: FunnelResult) -> None:
        """Offer the rows of one served list (nothing when it was not scored by the ranker)."""
        ...

    def refresh(self) -> dict[str, float] | None:
        """Compute PSI over the window when it holds enough rows, export it, start a new window."""
        ...


class NullDrift:
    """No reference (a version without one, no model) or metrics switched off: records nothing."""

    def record(self, result: FunnelResult) -> None:
        pass

    def refresh(self) -> dict[str, float] | None:
        return None


def score_rows(result: FunnelResult) -> np.ndarray:
    """``[k, 3]`` p_click, p_purchase and value of the served items (NaN where an item has none).

    >>> from streams.records import RecItem
    >>> from agents.funnel.ordering import Knobs
    >>> it = RecItem(item_id="i", position=0, score=1.0, source="ann", reason="r", p_click=0.5, p_purchase=0.25)
    >>> r = FunnelResult([it], [1.0], [False], np.zeros((1, 0), np.float32), (), Knobs(1, 1.0, 0.0))
    >>> score_rows(r).tolist()
    [[0.5, 0.25, nan]]
    """
    rows = [(it.p_click, it.p_purchase, it.value) for it in result.items]
    return np.array(rows, np.float64).reshape(-1, len(SCORE_NAMES))  # None becomes NaN


class DriftMonitor:
    """PSI of every ranker feature and score of the served lists against ``reference``.

    Rows are the served items' ranker inputs (the same rows the impressions topic logs) and their scores;
    a window is a uniform sample (``Reservoir``) of at most ``settings.reservoir_size`` rows, closed by
    ``refresh`` once it has seen ``settings.min_samples`` rows.
    """

    def __init__(
        self,
        reference: DriftReference,
        settings: DriftSettings,
        metrics: WorkerMetrics,
        *,
        version: str = "",
        snapshot: Path | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.reference, self.settings, self.metrics, self.version = reference, settings, metrics, version
        self.snapshot, self.clock = snapshot, clock
        self.rng = np.random.default_rng(settings.seed)
        self.columns: tuple[str, ...] = ()
        self._features: tuple[str, ...] | None = None
        self._window: Reservoir | None = None
        self.last: dict[str, float] = {}

    def record(self, result: FunnelResult) -> None:
        if not result.feature_columns or not result.items:
            return
        if result.feature_columns != self._features:
            self._start(result.feature_columns)
        window, n = self._window, len(result.items)
        assert window is not None  # set by _start
        if window.wants(n):
            window.add(np.hstack([result.features, score_rows(result)]))
        else:
            window.skip(n)  # most lists of a busy window: no row is kept, none is built

    def _start(self, features: tuple[str, ...]) -> None:
        self._features = features
        self.columns = (*features, *SCORE_NAMES)
        self._window = Reservoir(self.settings.reservoir_size, len(self.columns), self.rng)

    @property
    def seen(self) -> int:
        return self._window.seen if self._window is not None else 0

    def window(self) -> dict[str, np.ndarray]:
        """The current window's sample by column name."""
        if self._window is None:
            return {}
        rows = self._window.sample()
        return {name: rows[:, j] for j, name in enumerate(self.columns)}

    def refresh(self) -> dict[str, float] | None:
        if self._window is None or self._window.seen < self.settings.min_samples:
            return None
        sample = self.window()
        rows = len(next(iter(sample.values())))
        self.last = self.reference.psi(sample)
        self.metrics.drift(self.last, rows)
        if self.snapshot is not None:
            try:
                write_snapshot(self.snapshot, self.version, sample, self.clock())
            except OSError as exc:  # a full disk must not stop serving
                log.warning("drift snapshot %s not written: %s", self.snapshot, exc)
        self._window.reset()
        worst = max(self.last.items(), key=lambda kv: kv[1], default=None)
        log.debug("drift of %s over %d sampled rows; worst %s", self.version, rows, worst)
        return self.last


def build_drift(
    settings: DriftSettings,
    reference: DriftReference | None,
    metrics: WorkerMetrics,
    version: str = "",
    *,
    worker: str = "streamrec",
) -> DriftRecorder:
    """A monitor for ``reference`` (clearing the previous version's gauges), or ``NullDrift`` without one."""
    metrics.drift({}, 0)
    if not settings.enabled or reference is None:
        return NullDrift()
    snapshot = settings.snapshot_dir / f"{worker}.json" if settings.snapshot_dir is not None else None
    return DriftMonitor(reference, settings, metrics, version=version, snapshot=snapshot)
