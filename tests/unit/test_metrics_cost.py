"""The metrics-cost benchmark's mechanics on a small world without a model: same answers, only one side counts."""

from __future__ import annotations

import time

from agents.runtime import Runtime
from streams.bench.harness import simulated_lines
from streams.bench.metrics_cost import CostLoad, closed_loop, measure, twin, warm
from streams.metrics import Metrics, NullMetrics, exported_names
from streams.settings import load_settings


async def test_on_and_off_runtimes_serve_the_same_world_and_only_one_records() -> None:
    load = CostLoad(rounds=2, seconds=0.3, concurrency=3, users=200, items=300, scrape_s=0.2)
    events, catalog = simulated_lines(3000, seed=5, n_users=200, n_items=300, start=time.time() - 3600)
    base = load_settings(
        worker={"store": "memory", "app_id": "mc-test"},
        models={"registry_dir": "/nonexistent"},
        drift={"interval_s": 0.2},
        metrics={"ann_recall_interval_s": 0.2},
    )
    on = Runtime.build(base)
    await warm(on, events, catalog)
    off = twin(on, base.model_copy(update={"metrics": base.metrics.model_copy(update={"enabled": False})}))
    assert isinstance(on.metrics, Metrics) and isinstance(off.metrics, NullMetrics)
    assert len(on.catalog) == len(off.catalog) > 0 and off.local_users is on.local_users and on.popular
    a = await closed_loop(on, load, 0.3, first=0)
    b = await closed_loop(off, load, 0.3, first=0)
    assert a["requests"] > 10 and b["requests"] > 10
    assert on.registry.get_sample_value("streamrec_requests_total", {"agent": "mc-test"}) == a["requests"]
    assert off.registry is not on.registry and not exported_names(off.registry)  # nothing registered when off
    result = await measure(on, off, load)
    assert [r["metrics"] for r in result["rounds"]] == ["on", "off", "off", "on"]
    # the periodic jobs ran on the on-rounds' clock only: 0.6 s of it, every 0.2 s
    assert result["monitor_intervals_s"] == {"drift": 0.2, "recall": 0.2, "scrape": 0.2}
    assert all(2 <= result["monitor_runs"].get(job, 0) <= 3 for job in ("drift", "recall", "scrape"))
    assert result["metrics_on"]["rps_cpu_median"] > 0 and result["metrics_off"]["rps_cpu_median"] > 0
    assert -1.0 < result["throughput_cost_cpu"] < 1.0 and isinstance(result["within_target"], bool)
    assert all(r["cpu_s"] > 0 and r["rps_cpu"] >= r["rps"] * 0.5 for r in result["rounds"])
