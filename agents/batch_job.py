"""``batch-score`` as a job: load the champion, build the serving funnel, score every user, keep the record."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from agents.batch import BatchConfig, BatchScorer, BatchSummary, RecSink, list_users, load_catalog
from agents.batch_sinks import ParquetSink, RedisSink
from agents.funnel.pipeline import Funnel
from agents.serving_setup import build_funnel, funnel_config
from state.features import FeatureConfig
from state.items import ItemRecord
from state.pools import PoolConfig
from state.registry import FileRegistry, LoadedVersion
from state.store import OnlineFeatureStore
from streams.clock import Clock, SystemClock
from streams.errors import ConfigError
from streams.jobs import JobCounts, JobRecord, JobStore, JobTracker
from streams.settings import Settings, Variant

Out = Literal["redis", "parquet"]
KIND = "batch-score"


def one_search_thread() -> None:
    """FAISS searches on one thread in this process, like the ONNX sessions: the batch loop sends one query
    per user, for which OpenMP's thread hand-off costs more than it saves (7x slower on a busy 2-core box)."""
    import faiss

    faiss.omp_set_num_threads(1)


def load_ranker_version(settings: Settings) -> LoadedVersion:
    """The registry's champion, verified, with a ranker; raises (naming the registry) otherwise."""
    registry = FileRegistry(settings.models.registry_dir)
    version = registry.champion()
    if version is None:
        raise ConfigError(f"no champion model in {settings.models.registry_dir}: train and promote one first")
    loaded = registry.load(version)
    if "ranker" not in loaded.sessions:
        raise ConfigError(f"model {version} has no ranker graph; batch scoring ranks with one")
    return loaded


def batch_funnel(
    settings: Settings, store: OnlineFeatureStore, loaded: LoadedVersion, catalog: dict[str, ItemRecord], top_k: int
) -> Funnel:
    """The workers' funnel (same sources, filters, value formula, MMR) with exploration off."""
    serving = settings.serving
    config = funnel_config(serving, max(serving.max_k, top_k), Variant(name="batch", share=1.0, epsilon=0.0))
    return build_funnel(
        store=store,
        pools=PoolConfig(**settings.pools.model_dump()),
        features=FeatureConfig.from_settings(settings.features),
        loaded=loaded,
        catalog=catalog,
        config=config,
    )


def make_sink(out: Out, store: OnlineFeatureStore, settings: Settings, path: Path | None, job_id: str) -> RecSink:
    if out == "redis":
        return RedisSink(store, settings.batch.rec_ttl_s)
    return ParquetSink(path or settings.batch.jobs_dir / f"{job_id}.parquet")


@dataclass
class BatchJob:
    """One run of ``batch-score``: ``on_start(total)`` and ``on_progress(counts)`` drive a progress bar."""

    settings: Settings
    store: OnlineFeatureStore
    cfg: BatchConfig
    out: Out = "redis"
    path: Path | None = None
    clock: Clock | None = None
    on_start: Callable[[int], None] | None = None
    on_progress: Callable[[JobCounts], None] | None = None

    async def run(self, jobs: JobStore) -> tuple[JobRecord, BatchSummary]:
        """Score and write; the job record ends ``succeeded`` or ``failed`` (then the error is re-raised)."""
        params = {
            "top_k": self.cfg.top_k,
            "max_users": self.cfg.max_users,
            "out": self.out,
            "path": str(self.path) if self.path else None,
        }
        tracker = JobTracker(jobs, jobs.create(KIND, params))
        try:
            return await self._run(tracker)
        except BaseException as exc:  # the record must say why the job ended; the caller still sees it
            tracker.fail(f"{type(exc).__name__}: {exc}")
            raise

    async def _run(self, tracker: JobTracker) -> tuple[JobRecord, BatchSummary]:
        loaded = load_ranker_version(self.settings)
        users = await list_users(self.store, self.cfg.scan_count, self.cfg.max_users)
        tracker.start(total=len(users))
        if self.on_start is not None:
            self.on_start(len(users))
        catalog = await load_catalog(self.store, loaded.item_ids)
        funnel = batch_funnel(self.settings, self.store, loaded, dict(catalog), self.cfg.top_k)
        job_id = tracker.record.id
        sink = make_sink(self.out, self.store, self.settings, self.path, job_id)
        scorer = BatchScorer(
            funnel, self.store, sink, self.cfg, self.clock or SystemClock(), loaded.manifest.version, job_id
        )

        def progress(counts: JobCounts) -> None:
            tracker.advance(counts)
            if self.on_progress is not None:
                self.on_progress(counts)

        try:
            summary = await scorer.run(users, progress)
        except BaseException:
            if isinstance(sink, ParquetSink):
                sink.abort()
            raise
        output = await sink.close()
        result = {
            **output,
            "model_version": loaded.manifest.version,
            "seconds": round(summary.seconds, 3),
            "users_per_s": round(summary.users_per_s, 1),
            "skipped": summary.skipped,
            "degraded": summary.degraded,
        }
        return tracker.succeed(summary.counts, result), summary
