"""Job records: what a long-running command (``batch-score``) did, persisted as JSON under the run directory.

A record moves ``queued -> running -> succeeded | failed`` and is rewritten (atomically) as the job advances,
so ``streamrec jobs show ID`` reads a consistent snapshot at any time, from another process.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from streams.clock import Clock, SystemClock
from streams.errors import JobError

JobStatus = Literal["queued", "running", "succeeded", "failed"]
NEXT: dict[str, tuple[str, ...]] = {"queued": ("running", "failed"), "running": ("succeeded", "failed")}


class JobCounts(BaseModel):
    """``users`` scored so far, lists ``written``, users that ``failed``."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    users: int = Field(default=0, ge=0)
    written: int = Field(default=0, ge=0)
    failed: int = Field(default=0, ge=0)


class JobRecord(BaseModel):
    """One job; ``progress`` is the share of ``total`` done (``total`` None: unknown up front)."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    schema_version: Literal[1] = 1
    id: str
    kind: str
    status: JobStatus = "queued"
    progress: float = Field(default=0.0, ge=0.0, le=1.0)
    total: int | None = None
    counts: JobCounts = JobCounts()
    created_at: datetime
    started_at: datetime | None = None
    finished_at: datetime | None = None
    updated_at: datetime
    error: str | None = None
    params: dict[str, Any] = Field(default_factory=dict)
    result: dict[str, Any] = Field(default_factory=dict)

    @property
    def elapsed_s(self) -> float | None:
        """Seconds between start and finish (or the last update while running)."""
        if self.started_at is None:
            return None
        return ((self.finished_at or self.updated_at) - self.started_at).total_seconds()


def _utc(t: float) -> datetime:
    return datetime.fromtimestamp(t, UTC)


def new_job_id(kind: str, now: float, token: Callable[[], str] = lambda: secrets.token_hex(3)) -> str:
    """``{kind}-{UTC yyyymmdd-HHMMSS}-{6 hex}``: sorts by creation time, unique across processes.

    >>> new_job_id("batch-score", 1_700_000_000.0, lambda: "abc123")
    'batch-score-20231114-221320-abc123'
    """
    return f"{kind}-{_utc(now).strftime('%Y%m%d-%H%M%S')}-{token()}"


def transition(rec: JobRecord, status: JobStatus, now: float, **changes: Any) -> JobRecord:
    """``rec`` moved to ``status`` at ``now`` (with other field ``changes``); refuses an impossible move."""
    if status != rec.status and status not in NEXT.get(rec.status, ()):
        raise JobError(f"job {rec.id}: cannot go from {rec.status} to {status}")
    stamps: dict[str, Any] = {"updated_at": _utc(now)}
    if status == "running" and rec.started_at is None:
        stamps["started_at"] = _utc(now)
    if status in ("succeeded", "failed"):
        stamps["finished_at"] = _utc(now)
    if status == "succeeded":
        stamps["progress"] = 1.0
    return rec.model_copy(update={"status": status, **changes, **stamps})


class JobStore:
    """One JSON file per job, ``{root}/{id}.json``; writes go through a temporary file and a rename."""

    def __init__(self, root: Path, clock: Clock | None = None) -> None:
        self.root = root
        self.clock = clock or SystemClock()

    def path(self, job_id: str) -> Path:
        return self.root / f"{job_id}.json"

    def create(self, kind: str, params: dict[str, Any] | None = None, total: int | None = None) -> JobRecord:
        """A new ``queued`` job, already on disk."""
        now = self.clock.now()
        rec = JobRecord(
            id=new_job_id(kind, now),
            kind=kind,
            total=total,
            created_at=_utc(now),
            updated_at=_utc(now),
            params=params or {},
        )
        return self.save(rec)

    def save(self, rec: JobRecord) -> JobRecord:
        self.root.mkdir(parents=True, exist_ok=True)
        tmp = self.path(rec.id).with_suffix(".json.tmp")
        tmp.write_text(rec.model_dump_json(indent=2) + "\n", encoding="utf-8")
        tmp.replace(self.path(rec.id))
        return rec

    def get(self, job_id: str) -> JobRecord:
        """The record of ``job_id``; a missing id names the known ones."""
        path = self.path(job_id)
        if not path.is_file():
            known = [r.id for r in self.list()][-5:]
            raise JobError(f"no job {job_id!r} in {self.root} (latest: {', '.join(known) or 'none'})")
        return self._read(path)

    def list(self) -> list[JobRecord]:
        """Every readable record, oldest first."""
        if not self.root.is_dir():
            return []
        recs = [self._read(p) for p in sorted(self.root.glob("*.json"))]
        return sorted(recs, key=lambda r: (r.created_at, r.id))

    @staticmethod
    def _read(path: Path) -> JobRecord:
        try:
            return JobRecord.model_validate_json(path.read_bytes())
        except (OSError, ValidationError) as exc:
            raise JobError(f"{path}: unreadable job record: {exc}") from exc


class JobTracker:
    """Advances one job's record and persists it: every status change at once, progress at most every
    ``every_s`` seconds (a million-user run must not spend its time rewriting a file)."""

    def __init__(self, store: JobStore, rec: JobRecord, every_s: float = 0.5) -> None:
        self.store, self.record, self.every_s = store, rec, every_s
        self._saved_at = store.clock.now()

    def _move(self, status: JobStatus, force: bool = True, **changes: Any) -> JobRecord:
        now = self.store.clock.now()
        self.record = transition(self.record, status, now, **changes)
        if force or now - self._saved_at >= self.every_s:
            self.store.save(self.record)
            self._saved_at = now
        return self.record

    def start(self, total: int | None = None) -> JobRecord:
        return self._move("running", total=total if total is not None else self.record.total)

    def advance(self, counts: JobCounts) -> JobRecord:
        total = self.record.total
        progress = min(1.0, counts.users / total) if total else 0.0
        return self._move("running", force=False, counts=counts, progress=progress)

    def succeed(self, counts: JobCounts, result: dict[str, Any]) -> JobRecord:
        return self._move("succeeded", counts=counts, result=result)

    def fail(self, error: str, counts: JobCounts | None = None) -> JobRecord:
        return self._move("failed", error=error, counts=counts or self.record.counts)
