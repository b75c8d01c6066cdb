"""Hydration equals ``serving_row`` row for row, in the spec's column order, with defaults counted."""

from __future__ import annotations

import numpy as np
import pytest
from funnel_world import CFG, T0, catalog, user_state

from agents.funnel.hydrate import HydrationPlan, hydrate
from models.ranker_features import SERVING_FEATURES, serving_row
from models.spec import TensorSpec
from state.features import new_user_state, user_features, user_item_features
from state.items import ItemRecord
from state.user_state import UserState
from streams.errors import ConfigError


def _reference(state: UserState, ids: list[str], recs: list[ItemRecord | None], dots: list[float]) -> np.ndarray:
    user = user_features(state, T0, CFG)
    rows = []
    for i, rec, dot in zip(ids, recs, dots, strict=True):
        item = rec if rec is not None else ItemRecord(i, "unknown")
        ui = user_item_features(state, i, item.category, T0, CFG)
        rows.append(serving_row(user, ui, item, T0, dot))
    return np.asarray(rows, dtype=np.float32)


@pytest.mark.parametrize("new_user", [False, True])
def test_vectorised_rows_equal_serving_row(new_user: bool) -> None:
    items = catalog()
    ids = ["i05", "i09", "i13", "i20", "i01", "nope", "i33"]
    recs: list[ItemRecord | None] = [items.get(i) for i in ids]
    dots = np.linspace(-1, 1, len(ids)).astype(np.float32)
    found = np.array([True] * 6 + [False])
    state = None if new_user else user_state()
    got = hydrate(HydrationPlan.serving(), "u1", state, ids, recs, now=T0, cfg=CFG, tt_dot=dots, tt_found=found)
    want = _reference(state or new_user_state("u1"), ids, recs, [*dots[:6].tolist(), 0.0])
    np.testing.assert_allclose(got.matrix, want, rtol=1e-6, atol=1e-7)
    assert got.matrix.dtype == np.float32 and got.matrix.shape == (len(ids), len(SERVING_FEATURES))
    assert got.missing == {"user_state": len(ids) if new_user else 0, "item_record": 1, "tt_dot": 1, "non_finite": 0}
    if not new_user:  # the user-item block really is personal here
        col = SERVING_FEATURES.index
        assert got.matrix[2, col("ui_purchased")] == 1.0 and got.matrix[3, col("ui_negative_impression")] == 1.0
        assert got.matrix[0, col("ui_times_in_last_n")] == 2.0  # i05: viewed, then clicked


def test_spec_column_order_and_defaults() -> None:
    cols = ["x_tt_dot", "i_ctr", "u_avg_price"]
    spec = TensorSpec(name="features", dtype="float32", shape=[None, 3], columns=cols, defaults=[0.0, 0.05, -1.0])
    plan = HydrationPlan.from_spec(spec)
    full = hydrate(HydrationPlan.serving(), "u1", user_state(), ["i05"], [catalog()["i05"]], now=T0, cfg=CFG)
    part = hydrate(plan, "u1", user_state(), ["i05"], [catalog()["i05"]], now=T0, cfg=CFG)
    assert part.matrix.tolist() == full.matrix[:, [SERVING_FEATURES.index(c) for c in cols]].tolist()
    bad = ItemRecord("x", "shoes", price=float("inf"))
    assert hydrate(plan, "u1", None, ["x"], [bad], now=T0, cfg=CFG).missing["non_finite"] == 0  # price not used
    withprice = HydrationPlan.for_columns(["i_log_price", "i_ctr"], [3.0, 0.05])
    filled = hydrate(withprice, "u1", None, ["x"], [bad], now=T0, cfg=CFG)
    assert filled.matrix.tolist() == [[3.0, pytest.approx(0.05)]] and filled.missing["non_finite"] == 1


def test_unknown_columns_fail_at_start_up_listing_the_known_ones() -> None:
    with pytest.raises(ConfigError, match=r"\['i_shoe_size'\].*known columns.*x_tt_dot"):
        HydrationPlan.for_columns(["i_ctr", "i_shoe_size"])
    with pytest.raises(ConfigError, match="names no columns"):
        HydrationPlan.from_spec(TensorSpec(name="features", dtype="float32", shape=[None, 3]))
