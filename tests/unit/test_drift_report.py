"""The offline drift report over synthetic impressions and snapshots: the worker's PSI, JSON, plot and CLI."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from agents.drift import DriftMonitor
from agents.funnel.ordering import Knobs
from agents.funnel.outcome import FunnelResult
from models.drift import DriftReference
from models.drift_report import collect, drift_report, plot_drift, read_snapshot, write_snapshot
from state.registry import MANIFEST, Manifest
from streams.metrics import NullMetrics
from streams.records import Impression, RecItem
from streams.settings import DriftSettings

COLS = ("f_a", "f_b")
AT = datetime(2026, 1, 1, tzinfo=UTC)


def reference() -> DriftReference:
    rng = np.random.default_rng(0)
    x = np.c_[rng.normal(size=20_000), rng.exponential(size=20_000)]
    pc = rng.beta(2, 30, 20_000)
    return DriftReference.build(COLS, x, {"p_click": pc, "p_purchase": pc * 0.1, "value": pc * 3.0})


def impressions(n: int, shift: float, version: str = "v0001", seed: int = 1) -> list[Impression]:
    rng = np.random.default_rng(seed)
    out = []
    for c in range(n):
        x = np.c_[rng.normal(shift, 1.0, 10), rng.exponential(size=10)]
        pc = rng.beta(2, 30, 10)
        items = [
            RecItem(item_id=f"i{j}", position=j, score=0.0, source="ann", reason="r", p_click=float(p),
                    p_purchase=float(p) * 0.1, value=float(p) * 3.0)
            for j, p in enumerate(pc)
        ]  # fmt: skip
        out.append(
            Impression(correlation_id=f"c{c}", user_id="u", model_version=version, items=items,
                       feature_columns=list(COLS), features=x.tolist(), served_at=AT)
        )  # fmt: skip
    return out


def test_report_over_impressions_finds_the_shifted_feature() -> None:
    logged = [*impressions(1000, 0.5), *impressions(20, 0.0, version="v0002"), Impression(
        correlation_id="x", user_id="u", model_version="v0001", served_at=AT)]  # fmt: skip
    samples, used, skipped = collect(logged, "v0001")
    assert used == 1000 and dict(skipped) == {"version:v0002": 20, "unscored": 1}
    report = drift_report(reference(), samples, version="v0001", source="test", impressions=used)
    by = {f.name: f for f in report.features}
    assert report.rows == 10_000 and set(by) == {"f_a", "f_b", "p_click", "p_purchase", "value"}
    assert by["f_a"].psi == pytest.approx(0.2377, rel=0.15)  # the closed form for deciles and a 0.5 sd shift
    assert by["f_b"].psi < 0.05 and by["f_b"].level == "stable"
    assert report.worst(1)[0].name == "f_a"
    assert by["f_a"].live_mean == pytest.approx(0.5, abs=0.1) and by["f_a"].reference_mean == pytest.approx(0, abs=0.05)
    assert sum(by["f_a"].live) == pytest.approx(1.0, abs=1e-3)


def test_offline_psi_is_the_workers_psi_on_the_same_rows() -> None:
    logged = impressions(100, 1.0)
    samples, _, _ = collect(logged, "v0001")
    offline = {f.name: f.psi for f in drift_report(reference(), samples, version="v0001", source="t").features}
    mon = DriftMonitor(reference(), DriftSettings(reservoir_size=5000, min_samples=1), NullMetrics())
    for imp in logged:
        mon.record(
            FunnelResult(imp.items, imp.propensities, [False] * 10, np.asarray(imp.features, np.float32), COLS,
                         Knobs(10, 1.0, 0.0))
        )  # fmt: skip
    live = mon.refresh()
    assert live is not None and set(live) == set(offline)
    for name, value in offline.items():
        assert live[name] == pytest.approx(value, rel=1e-4, abs=1e-6)  # float32 rows in the worker


def test_report_json_and_plot(tmp_path: Path) -> None:
    samples, used, _ = collect(impressions(100, 1.0), "v0001")
    report = drift_report(reference(), samples, version="v0001", source="test", impressions=used)
    body = report.to_json()
    assert body["features"]["f_a"]["level"] == "significant" and len(body["features"]["f_a"]["live"]) == 10
    json.dumps(body)
    png = tmp_path / "drift.png"
    plot_drift(report, png)
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 10_000


def test_snapshot_round_trip_and_the_cli(tmp_path: Path) -> None:
    from streams.cli import app
    from streams.cli_extras import register

    vdir = tmp_path / "reg" / "versions" / "v0001"
    vdir.mkdir(parents=True)
    manifest = Manifest(version="v0001", created_at=AT, code_version="x", split="s", metrics={"ndcg@10": 0.1},
                        data_window={}, files={}, drift=reference())  # fmt: skip
    (vdir / MANIFEST).write_text(manifest.model_dump_json())
    samples, _, _ = collect(impressions(100, 1.0), "v0001")
    snap = tmp_path / "snap" / "w1.json"
    write_snapshot(snap, "v0001", samples, 1.0)
    version, back = read_snapshot(snap)
    assert version == "v0001" and np.allclose(back["f_a"], samples["f_a"])
    register(app, next(g.typer_instance for g in app.registered_groups if g.name == "bench"))
    out, png = tmp_path / "r.json", tmp_path / "r.png"
    args = ["drift", "report", "--from", f"snapshot:{snap}", "--registry", str(tmp_path / "reg"), "--json", str(out)]
    res = CliRunner().invoke(app, [*args, "--plot", str(png), "--fail-above", "0.25"])
    assert res.exit_code == 3, res.output  # f_a moved by one standard deviation
    assert json.loads(out.read_text())["features"]["f_a"]["psi"] > 0.5 and png.is_file()
    assert CliRunner().invoke(app, [*args, "--fail-above", "5"]).exit_code == 0
