"""Concept test: the champion's scores for items a person names, for one user (no retrieval, no ordering knobs)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from agents.funnel.candidates import Candidate
from agents.funnel.filters import Constraints, apply_filters
from agents.funnel.hydrate import hydrate
from agents.funnel.pipeline import Funnel
from state.items import ItemRecord
from state.user_state import UserState
from streams.errors import ConfigError


@dataclass(frozen=True, slots=True)
class ConceptRow:
    """One named item: its value (``score``), the ranker's probabilities, and the serving filter that would
    drop it (None: it could be served)."""

    item_id: str
    score: float
    p_click: float
    p_purchase: float
    value: float
    known: bool
    filtered: str | None


def concept_rows(
    funnel: Funnel,
    user_id: str,
    *,
    state: UserState | None,
    user_vector: npt.NDArray[np.float32] | None,
    item_ids: Sequence[str],
    records: Sequence[ItemRecord | None],
    now: float,
    surface: str = "home",
) -> list[ConceptRow]:
    """Rank ``item_ids`` for the user with the funnel's ranker, features and value formula, best first."""
    if funnel.ranker is None:
        raise ConfigError("concept test needs a model with a ranker (no champion is loaded)")
    ids = list(item_ids)
    rows = funnel.vectors.rows(ids) if funnel.vectors is not None else None
    dots, found = funnel.tt_dots(rows, user_vector)
    hyd = hydrate(
        funnel.plan, user_id, state, ids, list(records), now=now, cfg=funnel.features, tt_dot=dots, tt_found=found
    )
    p_click, p_purchase = funnel.ranker.score(hyd.matrix)
    price = np.fromiter((r.price if r is not None else 0.0 for r in records), np.float64, len(ids))
    values = funnel.config.value_for(surface).value(p_click, p_purchase, price)
    out = []
    for j, item in enumerate(ids):
        cand = Candidate(item, ("concept",), (0,), 0.0)
        dropped = apply_filters([cand], [records[j]], state, Constraints(), funnel.config.filters).dropped
        v = float(values[j])
        out.append(
            ConceptRow(
                item, v, float(p_click[j]), float(p_purchase[j]), v, records[j] is not None, next(iter(dropped), None)
            )
        )
    return sorted(out, key=lambda r: (-r.value, r.item_id))
