"""Scoring: the ONNX ranker agrees with torch, the fake is deterministic, value formulas are a checked registry."""

from __future__ import annotations

import typing
from pathlib import Path

import numpy as np
import pytest

from agents.funnel.errors import RankerError
from agents.funnel.scoring import FORMULA_NAMES, FORMULAS, FakeRanker, FormulaName, OnnxRanker, ValueConfig
from models.ranker_features import RANKER_FEATURES, SERVING_FEATURES
from streams.errors import ConfigError


def test_onnx_ranker_matches_the_torch_model(tmp_path: Path) -> None:
    torch = pytest.importorskip("torch")
    from models.export import export_ranker
    from models.ranker import MultiTaskRanker, RankerConfig, RankerExport

    torch.manual_seed(0)
    n = len(RANKER_FEATURES)
    model = MultiTaskRanker(RankerConfig(hidden=8, tower=4), np.zeros(n, np.float32), np.ones(n, np.float32))
    export_ranker(model, tmp_path / "ranker.onnx")
    ranker = OnnxRanker.open(tmp_path / "ranker.onnx")
    x = np.random.default_rng(1).normal(size=(17, len(SERVING_FEATURES))).astype(np.float32)
    pc, pp = ranker.score(x)
    with torch.no_grad():
        tc, tp = RankerExport(model.eval())(torch.from_numpy(x))
    np.testing.assert_allclose(pc, tc.numpy(), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(pp, tp.numpy(), rtol=1e-5, atol=1e-6)
    assert pc.shape == (17,) and pc.dtype == np.float32 and np.all(pp <= pc)
    with pytest.raises(RankerError, match=r"\[N, 44\].*\[3, 5\]"):
        ranker.score(np.zeros((3, 5), np.float32))


def test_onnx_ranker_reports_an_unloadable_file(tmp_path: Path) -> None:
    (tmp_path / "bad.onnx").write_bytes(b"not a model")
    with pytest.raises(RankerError, match="not a loadable ONNX ranker"):
        OnnxRanker.open(tmp_path / "bad.onnx")


def test_fake_ranker_is_deterministic_and_follows_its_columns() -> None:
    x = np.random.default_rng(0).uniform(0, 1, size=(50, len(SERVING_FEATURES))).astype(np.float32)
    a, b = FakeRanker().score(x), FakeRanker().score(x.copy())
    assert all(np.array_equal(u, v) for u, v in zip(a, b, strict=True))
    tt = SERVING_FEATURES.index("x_tt_dot")
    # with only the dot varying, p_click is monotone in it
    y = np.zeros_like(x)
    y[:, tt] = np.linspace(-2, 2, 50)
    assert np.all(np.diff(FakeRanker().score(y)[0]) > 0)
    sub = FakeRanker(["i_cvr"]).score(np.full((2, 1), 0.5, np.float32))
    assert sub[1].tolist() == pytest.approx([0.5 * 1 / (1 + np.exp(1.0))] * 2)


def test_formula_registry_matches_the_literal_and_rejects_unknown_names() -> None:
    assert set(FORMULAS) == set(FORMULA_NAMES) == set(typing.get_args(FormulaName))
    with pytest.raises(
        ConfigError, match="unknown value formula 'gmv'; valid formulas: click, purchase, expected_revenue, weighted"
    ):
        ValueConfig("gmv")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="price_scale"):
        ValueConfig("weighted", price_scale=0.0)


def test_expected_revenue_is_click_times_conversion_times_price() -> None:
    p_click = np.array([0.1, 0.4, 0.2])
    p_buy_given_click = np.array([0.5, 0.05, 0.2])
    price = np.array([10.0, 200.0, 30.0])
    got = ValueConfig("expected_revenue").value(p_click, p_click * p_buy_given_click, price)
    np.testing.assert_allclose(got, p_click * p_buy_given_click * price)
    assert np.argsort(-got).tolist() == [1, 2, 0]
