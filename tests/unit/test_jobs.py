"""Job records: transitions, persistence as the job advances (throttled), listing and lookup errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from streams.clock import FakeClock
from streams.errors import JobError
from streams.jobs import JobCounts, JobStore, JobTracker, transition

T0 = 1_700_000_000.0


def _on_disk(store: JobStore, job_id: str) -> dict[str, object]:
    return json.loads(store.path(job_id).read_text())  # type: ignore[no-any-return]


def test_a_job_goes_queued_running_succeeded_and_every_step_is_on_disk(tmp_path: Path) -> None:
    clock = FakeClock(T0)
    store = JobStore(tmp_path / "jobs", clock)
    rec = store.create("batch-score", {"top_k": 10})
    assert rec.id.startswith("batch-score-20231114-221320-") and rec.status == "queued"
    assert _on_disk(store, rec.id)["status"] == "queued"
    tracker = JobTracker(store, rec, every_s=1.0)
    clock.advance(2)
    tracker.start(total=100)
    assert _on_disk(store, rec.id)["status"] == "running" and _on_disk(store, rec.id)["total"] == 100
    clock.advance(0.5)
    tracker.advance(JobCounts(users=40, written=39, failed=1))
    assert _on_disk(store, rec.id)["progress"] == 0.0  # throttled: written at most every second
    clock.advance(0.6)
    tracker.advance(JobCounts(users=60, written=59, failed=1))
    disk = _on_disk(store, rec.id)
    assert disk["progress"] == 0.6 and disk["counts"] == {"users": 60, "written": 59, "failed": 1}
    clock.advance(1.0)
    done = tracker.succeed(JobCounts(users=100, written=99, failed=1), {"users_per_s": 25.0})
    assert store.get(rec.id) == done and done.progress == 1.0 and done.result == {"users_per_s": 25.0}
    assert done.elapsed_s == pytest.approx(2.1) and done.started_at is not None
    assert (done.started_at.timestamp(), done.finished_at.timestamp() if done.finished_at else None) == (
        T0 + 2,
        pytest.approx(T0 + 4.1),
    )


def test_impossible_moves_are_refused(tmp_path: Path) -> None:
    store = JobStore(tmp_path, FakeClock(T0))
    rec = store.create("batch-score")
    with pytest.raises(JobError, match="from queued to succeeded"):
        transition(rec, "succeeded", T0)
    failed = JobTracker(store, rec).fail("boom")
    assert failed.status == "failed" and failed.error == "boom" and failed.started_at is None
    with pytest.raises(JobError, match="from failed to running"):
        transition(failed, "running", T0)


def test_list_is_oldest_first_and_get_names_known_ids(tmp_path: Path) -> None:
    clock = FakeClock(T0)
    store = JobStore(tmp_path / "jobs", clock)
    assert store.list() == []
    ids = []
    for _ in range(3):
        ids.append(store.create("batch-score").id)
        clock.advance(1)
    assert [r.id for r in store.list()] == ids
    with pytest.raises(JobError, match=ids[-1]):
        store.get("batch-score-nope")
    store.path(ids[0]).write_text("{not json")
    with pytest.raises(JobError, match="unreadable job record"):
        store.get(ids[0])
    assert not list((tmp_path / "jobs").glob("*.tmp"))
