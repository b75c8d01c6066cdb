"""A small replay over the real broker and Redis: online HR/NDCG@10 agree with offline within 5 % relative."""

from __future__ import annotations

from pathlib import Path

import pytest

from streams.replay import ReplayOptions, run_replay
from streams.settings import Settings

ML100K = Path("../shared/data/ml-100k")


@pytest.mark.skipif(not (ML100K / "u.data").is_file(), reason="MovieLens 100K is not in ../shared/data/ml-100k")
def test_small_replay_agrees_with_offline_evaluation(base_settings: Settings) -> None:
    opts = ReplayOptions(data=ML100K, max_users=40, sample_rate=1.0, seed=1, config="tiny", train_replayed_only=True)
    report = run_replay(base_settings, opts)
    assert report["interactions_asked"] == 40 and report["users"] == 40
    assert report["model_version"] in report["served_versions"]  # the version itself answered
    assert report["fallback_answers"] <= 2  # a degraded answer (busy machine) is counted, and must stay rare
    assert report["events_streamed"] > 40 * 19  # every ml-100k user has at least 20 ratings
    for name in ("hr@10", "ndcg@10"):
        assert report["relative_difference"][name] <= 0.05, report
    assert report["pass"] is True
    assert report["offline"]["hr@10"] > 0.0  # a tiny model still hits: the comparison is not 0 == 0
    assert report["identical_lists"] >= 0.9
