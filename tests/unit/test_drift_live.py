"""Live drift and ANN recall in the worker: reservoir, PSI monitor and recall sampler on private registries."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest
from prometheus_client import CollectorRegistry

from agents.ann_recall import RecallSampler, SampledAnnSource, build_recall, exact_top
from agents.drift import DriftMonitor, NullDrift, build_drift
from agents.funnel.candidates import RetrievalContext
from agents.funnel.ordering import Knobs
from agents.funnel.outcome import FunnelResult
from agents.funnel.sources import AnnSource
from models.drift import DriftReference
from state.ann import all_vectors, build_index, recall_at_k
from state.reservoir import Reservoir
from streams.metrics import Metrics, NullMetrics
from streams.records import RecItem
from streams.settings import DriftSettings

COLS = ("f_a", "f_b")


def test_reservoir_is_bounded_and_uniform_over_the_window() -> None:
    rng = np.random.default_rng(0)
    means, low = [], []
    for _ in range(200):
        r = Reservoir(100, 1, rng)
        for start in range(0, 10_000, 37):  # uneven batches
            r.add(np.arange(start, min(start + 37, 10_000), dtype=np.float32).reshape(-1, 1))
        s = r.sample().ravel()
        assert r.seen == 10_000 and s.shape == (100,) and len(set(s.tolist())) == 100
        means.append(s.mean())
        low.append((s < 1000).mean())
    assert np.mean(means) == pytest.approx(4999.5, rel=0.02)  # a front-loaded sample would sit far lower
    assert np.mean(low) == pytest.approx(0.1, abs=0.01)


def test_reservoir_keeps_everything_until_full_then_resets() -> None:
    r = Reservoir(5, 2, np.random.default_rng(1))
    r.add(np.array([[1, 2], [3, 4]]))
    assert r.sample().tolist() == [[1, 2], [3, 4]]
    r.add(np.zeros((0, 2)))
    assert r.seen == 2
    r.reset()
    assert r.seen == 0 and r.sample().shape == (0, 2)
    a, b = Reservoir(5, 1, np.random.default_rng(3)), Reservoir(5, 1, np.random.default_rng(3))
    for res in (a, b):
        res.add(np.arange(50, dtype=np.float32))
    assert a.sample().tolist() == b.sample().tolist()  # seeded: reproducible


def reference(seed: int = 0) -> DriftReference:
    rng = np.random.default_rng(seed)
    x = np.c_[rng.normal(size=20_000), rng.exponential(size=20_000)]
    pc = rng.beta(2, 30, 20_000)
    return DriftReference.build(COLS, x, {"p_click": pc, "p_purchase": pc * 0.1, "value": pc * 3.0})


def served(rng: np.random.Generator, shift: float = 0.0, k: int = 10) -> FunnelResult:
    x = np.c_[rng.normal(shift, 1.0, k), rng.exponential(size=k)].astype(np.float32)
    pc = rng.beta(2, 30, k)
    items = [
        RecItem(item_id=f"i{j}", position=j, score=0.0, source="ann", reason="r", p_click=float(p),
                p_purchase=float(p) * 0.1, value=float(p) * 3.0)
        for j, p in enumerate(pc)
    ]  # fmt: skip
    return FunnelResult(items, [1.0] * k, [False] * k, x, COLS, Knobs(k, 1.0, 0.0))


def psi_sample(reg: CollectorRegistry, feature: str) -> float | None:
    return reg.get_sample_value("streamrec_feature_psi", {"agent": "w1", "feature": feature})


def test_monitor_reports_psi_per_feature_once_the_window_is_full() -> None:
    reg = CollectorRegistry()
    m = Metrics(reg, agent="w1")
    mon = DriftMonitor(reference(), DriftSettings(reservoir_size=1000, min_samples=500), m)
    rng = np.random.default_rng(5)
    for _ in range(40):
        mon.record(served(rng))
    assert mon.refresh() is None and psi_sample(reg, "f_a") is None  # 400 rows < min_samples
    for _ in range(60):
        mon.record(served(rng))
    got = mon.refresh()
    assert got is not None and set(got) == {"f_a", "f_b", "p_click", "p_purchase", "value"}
    assert max(got.values()) < 0.05
    assert psi_sample(reg, "f_a") == pytest.approx(got["f_a"])
    assert reg.get_sample_value("streamrec_drift_samples", {"agent": "w1"}) == 1000.0
    assert mon.seen == 0  # a new window
    for _ in range(100):
        mon.record(served(rng, shift=1.0))
    shifted = mon.refresh()
    assert shifted is not None and shifted["f_a"] == pytest.approx(0.93, rel=0.15)
    assert shifted["f_b"] < 0.05 and psi_sample(reg, "f_a") == pytest.approx(shifted["f_a"])


def test_unscored_lists_are_ignored_and_a_version_without_reference_gets_no_monitor() -> None:
    reg = CollectorRegistry()
    m = Metrics(reg, agent="w1")
    mon = DriftMonitor(reference(), DriftSettings(min_samples=1), m)
    unscored = FunnelResult([], [], [], np.zeros((0, 0), np.float32), (), Knobs(10, 1.0, 0.0))
    mon.record(unscored)
    assert mon.refresh() is None
    mon.record(served(np.random.default_rng(0)))
    assert mon.refresh() is not None and psi_sample(reg, "f_a") is not None
    assert isinstance(build_drift(DriftSettings(), None, m), NullDrift)  # a swap to a version without one...
    assert psi_sample(reg, "f_a") is None  # ...removes the old version's series
    assert isinstance(build_drift(DriftSettings(enabled=False), reference(), m), NullDrift)
    assert isinstance(build_drift(DriftSettings(), reference(), NullMetrics()), DriftMonitor)


def clustered(n: int = 4000, dim: int = 16, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(40, dim))
    return (centres[rng.integers(0, 40, n)] + 0.6 * rng.normal(size=(n, dim))).astype(np.float32)


def test_all_vectors_reconstructs_every_backend() -> None:
    vecs = clustered(2000)
    ids = np.arange(2000, dtype=np.int64)[::-1].copy()
    for kind in ("exact", "hnsw", "ivf"):
        index = build_index(kind, ids, vecs)
        got_ids, got = all_vectors(index)
        assert np.allclose(got, vecs[1999 - got_ids], atol=1e-4), kind
        rests: list[float] = []
        chunked_ids, chunked = all_vectors(index, chunk_rows=300, rest=rests.append)
        assert np.array_equal(chunked_ids, got_ids) and np.array_equal(chunked, got) and len(rests) == 7, kind


def test_sampled_recall_matches_an_offline_exact_comparison() -> None:
    vecs = clustered()
    item_ids = [f"i{j}" for j in range(len(vecs))]
    ivf = build_index("ivf", np.arange(len(vecs), dtype=np.int64), vecs, nlist=64, nprobe=2)
    reg = CollectorRegistry()
    sampler = RecallSampler(ivf, item_ids, Metrics(reg, agent="w1"), rate=1.0, rng=np.random.default_rng(0))
    source = SampledAnnSource(AnnSource(ivf, item_ids, k=50), sampler)
    queries = clustered(30, seed=9)
    for q in queries:
        ctx = RetrievalContext("u", None, 0.0, q, (), frozenset())
        assert 0 < len(asyncio.run(source.fetch(ctx))) <= 50  # IVF may leave slots empty
    recalls = sampler.check()
    approx, _ = ivf.search(queries, 50)
    offline = recall_at_k(approx, exact_top(vecs, queries, 50))
    assert len(recalls) == 30 and np.mean(recalls) == pytest.approx(offline)
    assert 0.2 < offline < 0.99  # nprobe=2 of 64 cells: visibly approximate
    assert reg.get_sample_value("streamrec_ann_recall", {"agent": "w1"}) == pytest.approx(offline)
    assert reg.get_sample_value("streamrec_ann_recall_sampled_count", {"agent": "w1"}) == 30.0
    assert sampler.check() == []  # drained


def test_chunked_exact_search_equals_one_pass_and_rests_after_every_chunk() -> None:
    vecs, queries = clustered(2000), clustered(7, seed=5)
    one_pass = exact_top(vecs, queries, 300)
    oracle = np.argsort(-(queries @ vecs.T), axis=1, kind="stable")[:, :300]  # numpy, all rows at once
    assert np.array_equal(one_pass, oracle)
    rests: list[float] = []
    for chunk in (1, 299, 300, 301, 1024, 5000):
        rests.clear()
        assert np.array_equal(exact_top(vecs, queries, 300, chunk_rows=chunk, rest=rests.append), one_pass), chunk
        assert len(rests) == -(-2000 // chunk) and min(rests) >= 0.0
    assert exact_top(vecs[:10], queries, 300, chunk_rows=4).shape == (7, 10)  # k capped at the rows


def test_the_recall_check_sleeps_to_its_duty_cycle() -> None:
    vecs = clustered(4000)
    item_ids = [f"i{j}" for j in range(len(vecs))]
    exact = build_index("exact", np.arange(4000, dtype=np.int64), vecs)
    sampler = RecallSampler(
        exact, item_ids, NullMetrics(), rate=1.0, rng=np.random.default_rng(1), chunk_rows=500, duty=0.25
    )
    slept: list[float] = []
    sampler._rest_sleep = slept.append  # type: ignore[method-assign]
    for q in clustered(5, seed=4):
        sampler.offer(q, 10, [])
    assert sampler.check() == [0.0] * 5
    assert len(slept) == 8 + 8 and all(s >= 0.0 for s in slept)  # 8 chunks rebuilt, then 8 searched
    slept.clear()
    sampler.offer(clustered(1, seed=6)[0], 10, [])
    assert len(sampler.check()) == 1 and len(slept) == 8  # the vectors are rebuilt once


def test_exact_index_has_full_recall_and_sampling_follows_the_rate() -> None:
    vecs = clustered(1000)
    item_ids = [f"i{j}" for j in range(len(vecs))]
    exact = build_index("exact", np.arange(1000, dtype=np.int64), vecs)
    sampler = RecallSampler(exact, item_ids, NullMetrics(), rate=0.1, rng=np.random.default_rng(1), max_pending=10_000)
    found = [("i1", 1.0)]
    for q in clustered(2000, seed=3):
        sampler.offer(q, 1, found)
    assert 150 < len(sampler._pending) < 250
    sampler = RecallSampler(exact, item_ids, NullMetrics(), rate=1.0, rng=np.random.default_rng(1))
    source = SampledAnnSource(AnnSource(exact, item_ids, k=100), sampler)
    for q in clustered(20, seed=4):
        asyncio.run(source.fetch(RetrievalContext("u", None, 0.0, q, (), frozenset())))
    assert sampler.check() == [1.0] * 20
    assert build_recall(exact, item_ids, NullMetrics(), enabled=True, rate=0.0, seed=0) is None
    assert build_recall(exact, item_ids, NullMetrics(), enabled=False, rate=0.5, seed=0) is None
    assert build_recall(None, (), NullMetrics(), enabled=True, rate=0.5, seed=0) is None


def test_infra_alerts_and_dashboard_cover_drift_and_recall() -> None:
    import json
    from pathlib import Path

    from streams.metrics import exported_names

    infra = Path(__file__).resolve().parents[2] / "infra"
    defined = exported_names(Metrics(CollectorRegistry(), agent="w1").registry)
    assert {"streamrec_feature_psi", "streamrec_drift_samples", "streamrec_ann_recall_sampled_bucket"} <= defined
    alerts = (infra / "prometheus" / "alerts.yml").read_text()
    assert "alert: StreamrecFeatureDrift" in alerts and "alert: StreamrecScoreDrift" in alerts
    assert alerts.count("streamrec_feature_psi") == 2 and "> 0.25" in alerts
    dash = json.loads((infra / "grafana" / "dashboard.json").read_text())
    exprs = {p["title"]: " ".join(t["expr"] for t in p.get("targets", [])) for p in dash["panels"]}
    assert "streamrec_feature_psi" in exprs["Feature drift (PSI, worst 10)"]
    assert "p_click|p_purchase|value" in exprs["Score drift (PSI)"]
    assert "streamrec_ann_recall_sampled_bucket" in exprs["ANN recall (sampled)"]


def test_the_first_recall_check_reconstructs_the_vectors_before_any_search_is_sampled() -> None:
    vecs = clustered(1000)
    exact = build_index("exact", np.arange(1000, dtype=np.int64), vecs)
    sampler = RecallSampler(
        exact, [f"i{j}" for j in range(1000)], NullMetrics(), rate=1.0, rng=np.random.default_rng(1), chunk_rows=250
    )
    slept: list[float] = []
    sampler._rest = slept.append  # type: ignore[method-assign]
    assert sampler.check() == [] and len(slept) == 4  # nothing sampled yet: the 4 chunks are rebuilt now
    sampler.offer(vecs[3], 5, [("i3", 1.0)])
    assert len(sampler.check()) == 1 and len(slept) == 4 + 4  # then only searched
