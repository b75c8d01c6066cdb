"""What one funnel run produces: the served items plus everything the response, metrics and impression log need."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

import numpy as np
import numpy.typing as npt

from agents.funnel.candidates import EXPLORE_REASON, reason_for
from agents.funnel.filters import Filtered
from agents.funnel.ordering import Knobs, Slate
from streams.records import Impression, RecItem


@dataclass(frozen=True)
class FunnelResult:
    """The answer of :meth:`Funnel.run`.

    ``propensities``, ``explored`` and the rows of ``features`` are aligned with ``items``. ``degraded`` names
    every reason the answer is not the full pipeline's (``no_ranker``, ``ranker_error``, ``source:<name>``,
    ``items_store``, ``user_vector``, ``deadline``, ``no_candidates``); ``fallback`` is true when it is not empty.
    """

    items: list[RecItem]
    propensities: list[float]
    explored: list[bool]
    features: npt.NDArray[np.float32]
    feature_columns: tuple[str, ...]
    knobs: Knobs
    stage_ms: dict[str, float] = field(default_factory=dict)
    dropped: dict[str, int] = field(default_factory=dict)
    missing: dict[str, int] = field(default_factory=dict)
    source_counts: dict[str, int] = field(default_factory=dict)
    source_errors: dict[str, int] = field(default_factory=dict)
    degraded: tuple[str, ...] = ()
    skipped: tuple[str, ...] = ()
    n_candidates: int = 0
    kept: Filtered | None = None  # the filtered candidates, for shadow scoring of the same list
    values: npt.NDArray[np.float64] | None = None  # the model's value of each kept candidate (None: unranked)
    n_ranked: int = 0

    @property
    def fallback(self) -> bool:
        return bool(self.degraded)

    def impression(
        self, correlation_id: str, user_id: str, *, variant: str, model_version: str, served_at: datetime
    ) -> Impression:
        """The impressions-topic record of this list (positions, propensities, the feature rows used)."""
        return Impression(
            correlation_id=correlation_id,
            user_id=user_id,
            variant=variant,
            model_version=model_version,
            items=self.items,
            propensities=self.propensities,
            feature_columns=list(self.feature_columns),
            features=self.features.tolist(),
            fallback=self.fallback,
            served_at=served_at,
        )


def slate_items(
    slate: Slate,
    kept: Filtered,
    values: npt.NDArray[np.float64],
    p_click: npt.NDArray[np.float32] | None,
    p_purchase: npt.NDArray[np.float32] | None,
) -> list[RecItem]:
    """The served items of ``slate`` (positions into ``kept``); probabilities and value only when ranked."""
    ranked = p_click is not None and p_purchase is not None
    out = []
    for pos, (j, explored) in enumerate(zip(slate.order, slate.explored, strict=True)):
        cand = kept.kept[j]
        out.append(
            RecItem(
                item_id=cand.item_id,
                position=pos,
                score=float(values[j]),
                source=cand.source,
                reason=EXPLORE_REASON if explored else reason_for(cand.source),
                p_click=float(p_click[j]) if ranked and p_click is not None else None,
                p_purchase=float(p_purchase[j]) if ranked and p_purchase is not None else None,
                value=float(values[j]) if ranked else None,
            )
        )
    return out
