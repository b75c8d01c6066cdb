"""Multi-task ranker: point-in-time features, ESMM training, calibration, ONNX parity."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
import torch

from models.calibration import expected_calibration_error
from models.export import export_ranker
from models.ranker import RankerConfig, RankerExport, train_ranker
from models.ranker_features import POSITION, RANKER_FEATURES, SERVING_FEATURES, RankerData, build_ranker_data
from models.simlog import load_simulator

CFG = RankerConfig(hidden=32, tower=16, epochs=8)


def _data(sim_dir: Path) -> RankerData:
    return build_ranker_data(load_simulator(sim_dir / "events.jsonl", sim_dir / "catalog.jsonl"))


def test_features_are_point_in_time(sim_dir: Path) -> None:
    data = _data(sim_dir)
    assert data.x.shape == (len(data.clicked), len(RANKER_FEATURES))
    first = data.x[0]
    # the very first impression of the log has no history: no clicks, no seen items, no affinity
    assert first[RANKER_FEATURES.index("u_lifetime_events")] == 0.0
    assert first[RANKER_FEATURES.index("ui_seen")] == 0.0
    assert first[RANKER_FEATURES.index("i_log_impressions")] == 0.0
    assert np.all(np.isfinite(data.x))


@pytest.mark.parametrize("experts", [0, 3])
def test_ranker_learns_and_is_calibrated(sim_dir: Path, experts: int) -> None:
    trained = train_ranker(_data(sim_dir), replace(CFG, n_experts=experts))
    m = trained.metrics
    assert m["auc_click"] > 0.7
    assert m["auc_purchase"] > 0.65
    assert 0.0 <= m["ece_click"] < 0.1
    assert m["temperature_click"] > 0


def test_purchase_probability_never_exceeds_click(sim_dir: Path) -> None:
    data = _data(sim_dir)
    trained = train_ranker(data, CFG)
    with torch.no_grad():
        p_click, p_buy = trained.model(torch.from_numpy(data.x))
    assert torch.all(p_buy <= p_click + 1e-7)


def test_same_seed_same_ranker(sim_dir: Path) -> None:
    data = _data(sim_dir)
    assert train_ranker(data, CFG).metrics == train_ranker(data, CFG).metrics


def test_ece_by_hand() -> None:
    y = np.array([1, 0, 0, 0], dtype=np.float64)
    assert expected_calibration_error(y, np.array([0.25, 0.25, 0.25, 0.25])) == pytest.approx(0.0)


@pytest.mark.parametrize("batch", [1, 7, 1000])
def test_ranker_onnx_parity_random_and_real(sim_dir: Path, tmp_path: Path, batch: int) -> None:
    data = _data(sim_dir)
    trained = train_ranker(data, replace(CFG, epochs=2))
    spec = export_ranker(trained.model, tmp_path / "ranker.onnx")
    assert spec.inputs[0].columns == list(SERVING_FEATURES)
    sess = ort.InferenceSession(str(tmp_path / "ranker.onnx"), providers=["CPUExecutionProvider"])
    pos = RANKER_FEATURES.index(POSITION)
    real = np.delete(data.x[:batch], pos, axis=1)
    rand = np.random.default_rng(batch).normal(0, 3, (batch, len(SERVING_FEATURES))).astype(np.float32)
    wrapper = RankerExport(trained.model)
    for x in (real, rand):
        got = sess.run(None, {"features": np.ascontiguousarray(x)})
        with torch.no_grad():
            want = [t.numpy() for t in wrapper(torch.from_numpy(np.ascontiguousarray(x)))]
        assert got[0].shape == (x.shape[0],)
        for g, w in zip(got, want, strict=True):
            assert np.abs(g - w).max() < 1e-5


def test_export_scores_as_if_at_the_top(sim_dir: Path) -> None:
    data = _data(sim_dir)
    trained = train_ranker(data, replace(CFG, epochs=2))
    pos = RANKER_FEATURES.index(POSITION)
    x = data.x[:5].copy()
    x[:, pos] = 0.0
    with torch.no_grad():
        direct = trained.model(torch.from_numpy(x))[0]
        exported = RankerExport(trained.model)(torch.from_numpy(np.delete(x, pos, axis=1)))[0]
    assert torch.allclose(direct, exported)
