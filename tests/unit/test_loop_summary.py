"""The closed-loop summary: rows per pinned variant, the winner by CTR, and whether the intervals separate."""

from __future__ import annotations

from collections import Counter

from agents.experiments import experiment_report
from streams.closed_loop import EXPERIMENT, LoopTally, experiment_for, summarize
from streams.records import Event, Impression

TRAINED, WEAK = f"{EXPERIMENT}:trained", f"{EXPERIMENT}:weak"


def _lists(variant: str, n: int, clicked: int) -> tuple[list[Impression], list[Event]]:
    imps = [
        Impression(correlation_id=f"{variant}-{i}", user_id="u", variant=variant, served_at="2026-01-01T00:00:00Z")
        for i in range(n)
    ]
    evs = [
        Event(
            event_id=f"{variant}-e{i}",
            type="click",
            user_id="u",
            item_id="i",
            ts="2026-01-01T00:00:01Z",
            request_id=f"{variant}-{i}",
        )
        for i in range(clicked)
    ]
    return imps, evs


def test_the_arms_pin_the_two_versions_evenly() -> None:
    exp = experiment_for("v0001", "v0002")
    assert {v.value_formula for v in exp.variants} == {"click"}
    assert [(v.name, v.share, v.model_version) for v in exp.variants] == [
        ("trained", 0.5, "v0001"),
        ("weak", 0.5, "v0002"),
    ]


def test_summary_names_the_winner_and_whether_the_intervals_separate() -> None:
    a_imps, a_evs = _lists(TRAINED, 1000, 300)
    b_imps, b_evs = _lists(WEAK, 1000, 200)
    versions = {TRAINED: "v0001", WEAK: "v0002"}
    tally = LoopTally(answered=Counter({TRAINED: 1000, WEAK: 1000}), clicked=Counter({TRAINED: 300, WEAK: 200}))
    out = summarize(experiment_report(a_imps + b_imps, a_evs + b_evs), versions, tally)
    assert out["winner_by_ctr"] == TRAINED and out["ctr_intervals_separate"] is True
    row = out["variants"][TRAINED]
    assert (row["model_version"], row["requests"], row["clicked"], row["ctr"]["value"]) == ("v0001", 1000, 300, 0.3)
    assert row["ctr"]["low"] < 0.3 < row["ctr"]["high"] and row["loop_clicked"] == 300
    close_imps, close_evs = _lists(WEAK, 1000, 290)
    out = summarize(experiment_report(a_imps + close_imps, a_evs + close_evs), versions, tally)
    assert out["winner_by_ctr"] == TRAINED and out["ctr_intervals_separate"] is False
