"""PSI maths on known distributions, reference histograms, and the reference stored in a registry version."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from models.drift import EPSILON, DriftReference, Histogram, bin_counts, psi, quantile_edges
from models.pipeline import build_version
from models.ranker_features import SERVING_FEATURES
from state.registry import DRIFT_FILE, MANIFEST, FileRegistry

NORMAL_DECILES = np.array(
    [-1.2815516, -0.8416212, -0.5244005, -0.2533471, 0.0, 0.2533471, 0.5244005, 0.8416212, 1.2815516]
)


def _normal_cdf(x: np.ndarray) -> np.ndarray:
    from scipy.special import ndtr

    return np.asarray(ndtr(x), np.float64)


def decile_psi_of_shift(delta: float) -> float:
    """Closed form: N(0, 1) deciles as bins, live N(delta, 1)."""
    edges = np.r_[-np.inf, NORMAL_DECILES, np.inf]
    actual = np.diff(_normal_cdf(edges - delta))
    return psi(np.full(10, 0.1), actual)


def test_same_distribution_is_near_zero_and_shifts_match_the_closed_form() -> None:
    rng = np.random.default_rng(0)
    hist = Histogram.of(rng.normal(size=50_000))
    assert len(hist.edges) == 9 and np.allclose(hist.edges, NORMAL_DECILES, atol=0.03)
    assert hist.proportions == pytest.approx([0.1] * 10, abs=1e-3)
    same = hist.psi(rng.normal(size=20_000))
    assert same is not None and same < 0.005
    for delta, expected in ((0.5, 0.2377), (1.0, 0.9261)):
        assert decile_psi_of_shift(delta) == pytest.approx(expected, abs=1e-3)
        got = hist.psi(rng.normal(delta, 1.0, 20_000))
        assert got == pytest.approx(expected, rel=0.08)


def test_psi_grows_with_the_shift_and_a_scale_change_is_seen_too() -> None:
    rng = np.random.default_rng(1)
    hist = Histogram.of(rng.normal(size=20_000))
    values = [hist.psi(rng.normal(d, 1.0, 10_000)) for d in (0.0, 0.1, 0.25, 0.5, 1.0)]
    assert all(v is not None for v in values)
    assert values == sorted(values)  # type: ignore[type-var]
    wider = hist.psi(rng.normal(0.0, 2.0, 10_000))
    assert wider is not None and wider > 0.25


def test_ties_stay_in_one_bin_and_a_constant_feature_has_two() -> None:
    zeros_mostly = np.r_[np.zeros(700), np.arange(1, 301, dtype=np.float64)]
    hist = Histogram.of(zeros_mostly)
    assert hist.edges[0] == 0.0 and hist.proportions[0] == pytest.approx(0.7)
    const = Histogram.of(np.full(100, 3.0))
    assert const.edges == [3.0] and const.proportions == [1.0, EPSILON]
    assert const.psi(np.full(50, 3.0)) == pytest.approx(0.0)
    moved = const.psi(np.full(50, 4.0))  # everything now in the upper bin
    assert moved == pytest.approx(2 * (1 - EPSILON) * np.log(1 / EPSILON))


def test_non_finite_values_are_ignored_and_empty_inputs_give_none() -> None:
    assert bin_counts([np.nan, np.inf, 1.0], [0.5]).tolist() == [0, 1]
    assert quantile_edges([np.nan]).size == 0
    hist = Histogram.of([1.0, 2.0, 3.0, 4.0])
    assert hist.psi([]) is None and hist.psi([np.nan]) is None
    assert Histogram.of([]).psi([1.0]) is None


def test_reference_over_columns_and_scores() -> None:
    rng = np.random.default_rng(2)
    x = np.c_[rng.normal(size=5000), rng.exponential(size=5000)]
    ref = DriftReference.build(["a", "b"], x, {"p_click": rng.beta(2, 20, 5000)})
    assert set(ref.histograms) == {"a", "b", "p_click"} and ref.rows == 5000
    live = {"a": rng.normal(size=3000), "b": rng.exponential(size=3000) * 3.0, "p_click": rng.beta(2, 20, 3000)}
    got = ref.psi({**live, "unknown": np.ones(3)})
    assert set(got) == {"a", "b", "p_click"}
    assert got["a"] < 0.02 and got["p_click"] < 0.02 and got["b"] > 0.25
    again = DriftReference.model_validate_json(ref.model_dump_json())
    assert again.psi(live) == got


@pytest.fixture(scope="module")
def staging(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from models.synthetic import generate, write_jsonl

    data = tmp_path_factory.mktemp("sim")
    write_jsonl(generate(5, n_users=40, n_items=30, requests_per_user=8), data / "events.jsonl", data / "catalog.jsonl")
    out = tmp_path_factory.mktemp("staging")
    build_version("sim", data, out, config="tiny")
    return out


def test_a_trained_version_carries_the_training_window_reference(staging: Path, tmp_path: Path) -> None:
    reg = FileRegistry(tmp_path / "reg")
    m = reg.publish(staging, split="sim/x", metrics={"ndcg@10": 0.1}, data_window={})
    ref = reg.load(m.version).manifest.drift
    assert ref is not None and ref.rows > 100
    assert set(ref.histograms) == {*SERVING_FEATURES, "p_click", "p_purchase", "value"}
    pc = ref.histograms["p_click"]
    assert 0.0 <= pc.lo <= pc.mean <= pc.hi <= 1.0 and sum(pc.proportions) == pytest.approx(1.0, abs=0.01)
    assert ref.histograms["p_purchase"].mean <= pc.mean


def test_a_version_published_without_a_reference_still_loads(staging: Path, tmp_path: Path) -> None:
    reg = FileRegistry(tmp_path / "reg")
    m = reg.publish(staging, split="sim/x", metrics={"ndcg@10": 0.1}, data_window={})
    path = tmp_path / "reg" / "versions" / m.version / MANIFEST
    raw = json.loads(path.read_text())
    del raw["drift"]  # what a version written before drift references looks like
    path.write_text(json.dumps(raw))
    loaded = reg.load(m.version)
    assert loaded.manifest.drift is None and "ranker" in loaded.sessions


def test_an_invalid_reference_file_refuses_to_publish(staging: Path, tmp_path: Path) -> None:
    from models.errors import RegistryError

    bad = tmp_path / "staging"
    shutil.copytree(staging, bad)
    (bad / DRIFT_FILE).write_text('{"rows": -1, "histograms": {}}')
    with pytest.raises(RegistryError, match="invalid drift reference"):
        FileRegistry(tmp_path / "reg").publish(bad, split="s", metrics={"ndcg@10": 0.1}, data_window={})


async def test_a_worker_serving_the_version_feeds_drift_and_recall_from_what_it_scores(
    staging: Path, tmp_path: Path
) -> None:
    from agents.drift import DriftMonitor
    from agents.monitors import check_recall
    from agents.runtime import Runtime
    from agents.serve import answer
    from models.synthetic import generate
    from streams.bench.metrics_cost import warm
    from streams.records import RecommendRequest
    from streams.settings import load_settings

    reg = FileRegistry(tmp_path / "reg")
    reg.promote(reg.publish(staging, split="sim/x", metrics={"ndcg@10": 0.1}, data_window={}).version)
    settings = load_settings(
        worker={"store": "memory", "app_id": "w1"},
        models={"registry_dir": tmp_path / "reg"},
        drift={"min_samples": 10},
        metrics={"ann_recall_sample": 1.0},
    )
    rt = Runtime.build(settings)
    world = generate(5, n_users=40, n_items=30, requests_per_user=8)  # the staging version's training world
    await warm(
        rt, [e.model_dump_json().encode() for e in world.events], [c.model_dump_json().encode() for c in world.catalog]
    )
    served: list[float] = []
    for u in range(40):
        resp, _ = await answer(rt, RecommendRequest(correlation_id=f"c{u}", user_id=f"u{u}", k=5), rt.clock.now())
        served += [it.p_click for it in resp.items if it.p_click is not None]
    assert isinstance(rt.drift, DriftMonitor) and len(served) > 50
    window = rt.drift.window()
    assert tuple(window) == (*SERVING_FEATURES, "p_click", "p_purchase", "value")
    assert sorted(window["p_click"].tolist()) == pytest.approx(sorted(served), abs=1e-6)  # exactly what was scored
    psi_values = rt.drift.refresh()
    assert psi_values is not None and len(psi_values) == len(SERVING_FEATURES) + 3
    sample = rt.registry.get_sample_value("streamrec_feature_psi", {"agent": "w1", "feature": "p_click"})
    assert sample == pytest.approx(psi_values["p_click"])
    recalls = await check_recall(rt)
    assert recalls and all(r == 1.0 for r in recalls)  # the version's index is exact below 50k items
    assert rt.registry.get_sample_value("streamrec_ann_recall", {"agent": "w1"}) == 1.0
