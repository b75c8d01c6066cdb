"""`streamrec closed-loop` in miniature: two pinned model versions served side by side over Kafka, simulated users
reacting, and the experiment report over the topics agreeing with what the loop itself saw."""

from __future__ import annotations

import asyncio
from pathlib import Path

from streams.closed_loop import LoopConfig, run_closed_loop
from streams.settings import Settings
from tests.integration.conftest import LOGS


def test_a_tiny_closed_loop_serves_both_pinned_versions_and_reports_them(
    base_settings: Settings, tmp_path: Path
) -> None:
    cfg = LoopConfig(users=150, items=200, warm_events=5_000, requests=300, rps=50.0, seed=4)
    result = asyncio.run(run_closed_loop(base_settings, cfg, logs=LOGS / "closed-loop"))
    rows = result["variants"]
    assert set(rows) == {"closed-loop:trained", "closed-loop:weak"}
    assert result["versions"] == {"trained": "v0001", "weak": "v0002"}
    assert {r["model_version"] for r in rows.values()} == {"v0001", "v0002"}
    assert result["timeouts"] == 0
    assert sum(r["loop_answered"] for r in rows.values()) == cfg.requests
    for row in rows.values():
        assert row["loop_answered"] > 90  # an even split of 300 requests, give or take
        # the report reads the topics; the loop counted on its side: the same lists, the same clicks
        assert row["requests"] >= row["loop_answered"] and row["clicked"] == row["loop_clicked"]
        ctr = row["ctr"]
        assert 0.0 <= ctr["low"] <= ctr["value"] <= ctr["high"] <= 1.0
    assert result["winner_by_ctr"] in rows
