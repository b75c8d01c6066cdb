"""Feature hydration: the ranker matrix for every candidate in one vectorised pass, in the spec's column order."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from itertools import repeat

import numpy as np
import numpy.typing as npt

from models.ranker_features import SERVING_FEATURES, context_features
from models.spec import TensorSpec
from state.feature_config import FeatureConfig
from state.features import USER_FEATURE_NAMES, category_affinity, negative_items, user_features
from state.item_columns import ItemColumns
from state.items import ItemRecord, RatePrior
from state.space_ids import ids_among
from state.user_state import UserState, new_user_state
from streams.errors import ConfigError

F32 = npt.NDArray[np.float32]
F64 = npt.NDArray[np.float64]

#: Category given to an item without a catalog record; training does the same (``PointInTimeFeatures``).
UNKNOWN_CATEGORY = "unknown"
_INDEX = {name: i for i, name in enumerate(SERVING_FEATURES)}
_PRIOR = RatePrior()  # the prior ``ItemRecord.ctr`` and ``conversion`` use by default


@dataclass(frozen=True)
class HydrationPlan:
    """Where each spec column comes from in :data:`SERVING_FEATURES`, and its default for unknown values."""

    columns: tuple[str, ...]
    source_index: npt.NDArray[np.int64]
    defaults: F32

    @classmethod
    def for_columns(cls, columns: Sequence[str], defaults: Sequence[float] | None = None) -> HydrationPlan:
        """Validate ``columns`` at start-up; an unknown name fails listing the names serving can produce.

        >>> HydrationPlan.for_columns(["i_ctr", "x_tt_dot"]).source_index.tolist()
        [30, 41]
        """
        unknown = [c for c in columns if c not in _INDEX]
        if unknown:
            raise ConfigError(f"ranker columns {unknown} cannot be hydrated; known columns: {list(SERVING_FEATURES)}")
        if defaults is not None and len(defaults) != len(columns):
            raise ConfigError(f"{len(defaults)} defaults for {len(columns)} ranker columns")
        fill = np.asarray(defaults if defaults is not None else [0.0] * len(columns), dtype=np.float32)
        return cls(tuple(columns), np.array([_INDEX[c] for c in columns], dtype=np.int64), fill)

    @classmethod
    def from_spec(cls, tensor: TensorSpec) -> HydrationPlan:
        """The plan of a registry spec's ranker input (``features``)."""
        if tensor.columns is None:
            raise ConfigError(f"ranker input {tensor.name!r} names no columns; cannot lay out features")
        return cls.for_columns(tensor.columns, tensor.defaults)

    @classmethod
    def serving(cls) -> HydrationPlan:
        return cls.for_columns(SERVING_FEATURES)

    @property
    def is_identity(self) -> bool:
        return len(self.columns) == len(SERVING_FEATURES) and bool(
            np.array_equal(self.source_index, np.arange(len(SERVING_FEATURES)))
        )


@dataclass(frozen=True)
class Hydrated:
    """The float32 ranker input ``[N, len(plan.columns)]`` and how many values were filled with defaults.

    ``missing`` counts rows without a user state (``user_state``: new users get the empty state's features,
    as in training), rows without a catalog record (``item_record``: features of an empty record in
    category ``unknown``, as in training), rows without a two-tower score (``tt_dot``: 0.0, training's value
    before the dot is filled) and non-finite cells replaced by the spec default (``non_finite``).
    """

    matrix: F32
    missing: dict[str, int]


def item_block(records: Sequence[ItemRecord] | ItemColumns, now: float, prior: RatePrior = _PRIOR) -> F64:
    """``ITEM_FEATURE_NAMES`` for every record, ``[N, 6]`` (vectorised ``item_features``).

    Rows of unknown items in :class:`ItemColumns` are those of an empty record (zeros), as in training.
    """
    if not isinstance(records, ItemColumns):
        records = ItemColumns.from_records([r.item_id for r in records], records)
    counts = records.counts.astype(np.float64)
    price, created = records.price, records.created_at
    imp, clicks, buys = counts[:, 4], counts[:, 1], counts[:, 3]
    ctr = (clicks + prior.ctr_a) / (imp + prior.ctr_a + prior.ctr_b)
    cvr = (buys + prior.cvr_a) / (clicks + prior.cvr_a + prior.cvr_b)
    age_days = np.maximum(0.0, now - created) / 86400.0
    return np.column_stack([np.log1p(imp), np.log1p(clicks), ctr, cvr, np.log1p(price), np.log1p(age_days)])


def user_item_block(
    state: UserState, item_ids: Sequence[str], categories: Sequence[str], now: float, cfg: FeatureConfig
) -> F64:
    """``USER_ITEM_FEATURE_NAMES`` for every item, ``[N, 7]`` (vectorised ``user_item_features``)."""
    aff = category_affinity(state, now, cfg)
    total = sum(aff.values())
    newest: dict[str, int] = {}
    times: dict[str, int] = {}
    for ts, _, item in state.last_n:
        newest[item] = max(ts, newest.get(item, ts))
        times[item] = times.get(item, 0) + 1
    n = len(item_ids)
    # The user touched a few dozen items at most: find those among the candidates (by position, or one C-level
    # pass of set membership), and index only the candidates found; a later duplicate id wins, as in a dict.
    negative = negative_items(state, now, cfg)
    touched = set(times).union(negative, state.purchased)
    hits = np.flatnonzero(ids_among(item_ids, touched)).tolist()
    row = {item_ids[j]: j for j in hits}
    mine = np.fromiter(map(aff.get, categories, repeat(0.0)), dtype=np.float64, count=n)
    count, last, neg, bought = np.zeros(n), np.full(n, -1.0), np.zeros(n), np.zeros(n)
    for item, c in times.items():
        if (j := row.get(item)) is not None:
            count[j], last[j] = c, newest[item]
    for items, out in ((negative, neg), (state.purchased, bought)):
        hit = [j for j in map(row.get, items) if j is not None]
        out[hit] = 1.0
    since = np.where(count > 0, now - last / 1000.0, cfg.idle_ttl_s)
    share = mine / total if total > 0 else np.zeros(n)
    return np.column_stack(
        [mine, share, (count > 0).astype(np.float64), count, np.minimum(since, cfg.idle_ttl_s), neg, bought]
    )


def hydrate(
    plan: HydrationPlan,
    user_id: str,
    state: UserState | None,
    item_ids: Sequence[str],
    records: Sequence[ItemRecord | None] | ItemColumns,
    *,
    now: float,
    cfg: FeatureConfig,
    tt_dot: F32 | None = None,
    tt_found: npt.NDArray[np.bool_] | None = None,
) -> Hydrated:
    """Rows equal to ``serving_row(user_features, user_item_features, record, now, tt_dot)``, laid out by ``plan``.

    ``tt_dot`` holds the two-tower scores (0 where ``tt_found`` is False or when absent).
    """
    n = len(item_ids)
    cols = records if isinstance(records, ItemColumns) else ItemColumns.from_records(item_ids, records)
    if len(cols) != n:
        raise ValueError(f"{len(cols)} records for {n} items")
    missing = {"user_state": n if state is None else 0, "item_record": 0, "tt_dot": 0, "non_finite": 0}
    st = state if state is not None else new_user_state(user_id)
    missing["item_record"] = int(n - cols.known.sum())
    categories = (
        cols.category
        if missing["item_record"] == 0
        else [c if k else UNKNOWN_CATEGORY for c, k in zip(cols.category, cols.known.tolist(), strict=True)]
    )
    user = user_features(st, now, cfg)
    full = np.empty((n, len(SERVING_FEATURES)), dtype=np.float64)
    nu = len(USER_FEATURE_NAMES)
    full[:, :nu] = np.array([user[k] for k in USER_FEATURE_NAMES])
    full[:, nu : nu + 6] = item_block(cols, now)
    full[:, nu + 6 : nu + 13] = user_item_block(st, item_ids, categories, now, cfg)
    dots = np.zeros(n) if tt_dot is None else np.asarray(tt_dot, dtype=np.float64)
    found = np.zeros(n, bool) if tt_dot is None else (np.ones(n, bool) if tt_found is None else tt_found)
    full[:, nu + 13] = np.where(found, dots, 0.0)
    missing["tt_dot"] = int(n - found.sum())
    full[:, nu + 14 :] = np.array(context_features(now))
    out = (full if plan.is_identity else full[:, plan.source_index]).astype(np.float32)
    bad = ~np.isfinite(out)
    if bad.any():
        out = np.where(bad, plan.defaults[None, :], out).astype(np.float32)
        missing["non_finite"] = int(bad.sum())
    return Hydrated(out, missing)
