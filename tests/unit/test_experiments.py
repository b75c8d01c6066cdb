"""Experiments: validated config, stable bucketing that honours shares, and report numbers computed by hand."""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass
from datetime import UTC, datetime

import pytest
from pydantic import ValidationError

from agents.experiments import (
    Estimate,
    Experiment,
    ExperimentSettings,
    Variant,
    assign,
    bucket,
    experiment_report,
    mean_interval,
    variant_label,
    wilson,
)
from streams.errors import ConfigError
from streams.records import Event, Impression

USERS = [f"u{i}" for i in range(20_000)]


def _exp(name: str = "ranker-v2", shares: tuple[float, ...] = (0.5, 0.3, 0.2)) -> Experiment:
    return Experiment(name=name, variants=tuple(Variant(name=f"v{i}", share=s) for i, s in enumerate(shares)))


def test_config_is_validated() -> None:
    with pytest.raises(ValidationError, match=r"sum to 0\.9"):
        _exp(shares=(0.5, 0.4))
    with pytest.raises(ValidationError, match="repeat"):
        Experiment(name="e", variants=(Variant(name="a", share=0.5), Variant(name="a", share=0.5)))
    with pytest.raises(ValidationError, match="value_formula"):
        Variant(name="a", share=1.0, value_formula="profit")
    with pytest.raises(ValidationError):
        Variant(name="a", share=0.0)
    with pytest.raises(ValidationError):
        Variant(name="a", share=1.0, mmr_lambda=1.5)
    with pytest.raises(ValidationError, match="experiment names repeat"):
        ExperimentSettings(active=(_exp(), _exp()))
    with pytest.raises(ValidationError):
        _exp().model_copy().__setattr__("name", "other")
    exp = Experiment(
        name="e",
        variants=(
            Variant(name="a", share=0.1),
            Variant(name="b", share=0.2),
            Variant(name="c", share=0.7, value_formula="click", epsilon=0.1),
        ),
    )
    assert exp.control.name == "a"
    assert exp.variant("c").value_formula == "click"
    with pytest.raises(ConfigError, match="no variant 'd'"):
        exp.variant("d")


def test_settings_read_experiments_from_json() -> None:
    s = ExperimentSettings.model_validate_json(
        '{"active": [{"name": "e", "variants": [{"name": "control", "share": 0.5},'
        ' {"name": "v2", "share": 0.5, "model_version": "v2", "mmr_lambda": 0.6}]}]}'
    )
    assert s.active[0].variant("v2").model_version == "v2"
    assert variant_label(s.active[0], s.active[0].variant("v2")) == "e:v2"


def test_bucketing_is_stable_and_matches_shares() -> None:
    exp = _exp()
    first = [assign(exp, u).name for u in USERS]
    assert first == [assign(exp, u).name for u in USERS]
    counts = {v.name: first.count(v.name) / len(USERS) for v in exp.variants}
    for v in exp.variants:
        assert counts[v.name] == pytest.approx(v.share, abs=0.015), counts
    assert all(0.0 <= bucket(exp.name, u) < 1.0 for u in USERS[:1000])


def test_bucketing_is_independent_across_experiments() -> None:
    a, b = _exp("a", (0.5, 0.5)), _exp("b", (0.5, 0.5))
    both = sum(1 for u in USERS if assign(a, u).name == "v0" and assign(b, u).name == "v0")
    assert both / len(USERS) == pytest.approx(0.25, abs=0.015)


def test_bucketing_is_the_same_in_another_process() -> None:
    code = (
        "from agents.experiments import bucket; print(' '.join(repr(bucket('ranker-v2', f'u{i}')) for i in range(5)))"
    )
    env = {**os.environ, "PYTHONHASHSEED": "12345"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env)
    assert out.stdout.split() == [repr(bucket("ranker-v2", f"u{i}")) for i in range(5)]


def test_disabled_experiment_serves_control() -> None:
    exp = _exp().model_copy(update={"enabled": False})
    assert {assign(exp, u).name for u in USERS[:500]} == {"v0"}


def _imp(cid: str, variant: str) -> Impression:
    return Impression(correlation_id=cid, user_id="u", variant=variant, served_at=datetime(2024, 1, 1, tzinfo=UTC))


def _ev(n: int, kind: str, request_id: str | None, price: float | None = None) -> Event:
    return Event(
        event_id=f"e{n}",
        type=kind,
        user_id="u",
        item_id="i",
        request_id=request_id,
        price=price,
        ts=datetime(2024, 1, 1, tzinfo=UTC),
    )


def _example() -> tuple[list[Impression], list[Event]]:
    imps = [_imp(f"c{i}", "e:control") for i in range(1, 5)] + [_imp(f"t{i}", "e:v2") for i in range(1, 6)]
    imps.append(_imp("c1", "e:v2"))  # a duplicate log line keeps its first variant
    raw = [
        ("click", "c1", None),
        ("click", "c1", None),
        ("purchase", "c1", 20.0),
        ("click", "c2", None),
        ("view", "c3", None),
        ("click", "t1", None),
        ("purchase", "t1", 10.0),
        ("purchase", "t1", 5.0),
        ("click", "t2", None),
        ("click", "t3", None),
        ("purchase", "t3", None),
        ("click", "zzz", None),
        ("click", None, None),
        ("view", None, None),
    ]
    return imps, [_ev(n, k, r, p) for n, (k, r, p) in enumerate(raw)]


def _close(e: Estimate, value: float, low: float, high: float) -> None:
    assert (e.value, e.low, e.high) == pytest.approx((value, low, high), abs=5e-5)


def test_report_on_a_hand_computed_example() -> None:
    imps, events = _example()
    report = experiment_report(imps, events, revenue_method="normal")
    assert report.unattributed_events == 2
    control, v2 = report.variants
    assert (control.variant, control.requests, control.clicked, control.converted, control.revenue) == (
        "e:control",
        4,
        2,
        1,
        20.0,
    )
    assert (v2.variant, v2.requests, v2.clicked, v2.converted, v2.revenue) == ("e:v2", 5, 3, 2, 15.0)
    # Wilson, z = 1.959964: 2/4 -> (0.15, 0.85); 1/4 -> (0.045587, 0.699358)
    _close(control.ctr, 0.5, 0.15, 0.85)
    _close(control.conversion, 0.25, 0.045587, 0.699358)
    # revenue [20, 0, 0, 0]: mean 5, sd 10, se 5 -> 5 -+ 9.79982
    _close(control.revenue_per_request, 5.0, -4.79982, 14.79982)
    # revenue [15, 0, 0, 0, 0]: mean 3, sd sqrt(45), se 3 -> 3 -+ 5.87989
    _close(v2.revenue_per_request, 3.0, -2.87989, 8.87989)
    # 3/5 -> (0.230720, 0.882380); 2/5 -> (0.117620, 0.769280)
    _close(v2.ctr, 0.6, 0.230720, 0.882380)
    _close(v2.conversion, 0.4, 0.117620, 0.769280)


def test_bootstrap_interval_is_seeded_and_brackets_the_mean() -> None:
    imps, events = _example()
    a = experiment_report(imps, events, seed=7).variants[0].revenue_per_request
    b = experiment_report(imps, events, seed=7).variants[0].revenue_per_request
    assert a == b
    assert a.low <= a.value == 5.0 <= a.high
    assert a.low >= 0.0 and a.high <= 20.0  # a resampled mean stays within the data's range
    flat = mean_interval([2.0] * 50, method="bootstrap", seed=1)
    assert (flat.low, flat.value, flat.high) == (2.0, 2.0, 2.0)
    big = mean_interval([0.0] * 9_000 + [100.0] * 1_000, method="bootstrap", seed=3, resamples=1000)
    normal = mean_interval([0.0] * 9_000 + [100.0] * 1_000)
    assert big.low == pytest.approx(normal.low, abs=0.3) and big.high == pytest.approx(normal.high, abs=0.3)


def test_wilson_edges() -> None:
    _close(wilson(0, 10), 0.0, 0.0, 0.277533)
    _close(wilson(10, 10), 1.0, 0.722467, 1.0)
    assert wilson(3, 10, confidence=0.99).low < wilson(3, 10).low


@dataclass(frozen=True)
class _Served:
    correlation_id: str
    variant: str


def test_report_accepts_any_record_with_the_fields() -> None:
    report = experiment_report([_Served("r1", "a")], [], revenue_method="normal")
    assert report.variants[0].requests == 1
    assert report.variants[0].revenue_per_request == Estimate(0.0, 0.0, 0.0)
