"""Bookkeeping of one funnel run: stage timings against the request's budget, and why it degraded."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field


@dataclass
class RunLog:
    """Mutable bookkeeping of one run (timings and degradation reasons)."""

    timer: Callable[[], float]
    t0: float
    budget_ms: float | None = None
    missing: dict[str, int] = field(default_factory=dict)
    stage_ms: dict[str, float] = field(default_factory=dict)
    degraded: list[str] = field(default_factory=list)
    mark: float = 0.0

    def lap(self, stage: str) -> None:
        now = self.timer()
        self.stage_ms[stage] = (now - (self.mark or self.t0)) * 1000.0
        self.mark = now

    def elapsed_ms(self) -> float:
        return (self.timer() - self.t0) * 1000.0

    def rushed(self, reserve_ms: float) -> bool:
        """True when less than ``reserve_ms`` of the budget is left."""
        return self.budget_ms is not None and self.budget_ms - self.elapsed_ms() < reserve_ms
