"""The funnel's start-up configuration: source quotas, filters, value formulas, ordering and deadlines."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from agents.funnel.filters import FilterConfig
from agents.funnel.ordering import OrderingConfig
from agents.funnel.scoring import ValueConfig
from streams.settings import DEFAULT_SOURCE_QUOTAS


@dataclass(frozen=True)
class FunnelConfig:
    """Start-up configuration of the funnel; ``value_for`` picks the surface's value formula.

    ``reserve_ms``: when less than this is left of a request's budget before ordering, MMR and exploration
    are skipped (plain value order with caps). ``seed`` makes exploration reproducible per correlation id.
    ``precomputed_within_ms``: when less than this is left of the budget at the start (or there is no ranker),
    the user's precomputed list (``streamrec batch-score``) is served, filtered, before the pools; 0 turns the
    deadline trigger off. ``catalog_first``: take item records from the worker's local catalog and ask the
    store only for the ones it lacks (saves the per-request decode of ~1,000 records; counters are as fresh
    as the catalog).
    """

    quotas: Mapping[str, int] = field(default_factory=lambda: dict(DEFAULT_SOURCE_QUOTAS))
    candidate_limit: int = 1000
    filters: FilterConfig = field(default_factory=FilterConfig)
    value: ValueConfig = field(default_factory=ValueConfig)
    surface_values: Mapping[str, ValueConfig] = field(default_factory=dict)
    ordering: OrderingConfig = field(default_factory=OrderingConfig)
    reserve_ms: float = 3.0
    precomputed_within_ms: float = 0.0
    catalog_first: bool = False
    user_categories: int = 2
    seed: int = 0

    def __post_init__(self) -> None:
        if self.candidate_limit < 1 or any(q < 0 for q in self.quotas.values()):
            raise ValueError(f"candidate_limit must be >= 1 and quotas >= 0: {self.candidate_limit}, {self.quotas}")

    def value_for(self, surface: str) -> ValueConfig:
        return self.surface_values.get(surface, self.value)
