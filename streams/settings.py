"""The one frozen settings tree; the only module that reads the environment (prefix ``STREAMREC_``).

Nested fields use ``__`` in variable names, e.g. ``STREAMREC_KAFKA__BOOTSTRAP_SERVERS``.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Literal, Self

from pydantic import BaseModel, ConfigDict, Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from streams.errors import ConfigError


class _Section(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class KafkaSettings(_Section):
    bootstrap_servers: str = "127.0.0.1:19092"
    topic_prefix: str = Field(default="", description="prepended to every topic name (test isolation, multi-tenant)")
    partitions: int = Field(default=4, ge=1, le=1024)
    replication_factor: int = Field(default=1, ge=1)
    client_id: str = "streamrec"


class RedisSettings(_Section):
    url: str = "redis://127.0.0.1:16379/0"
    password: SecretStr | None = None
    key_prefix: str = "sr"
    user_ttl_s: int = Field(default=7 * 24 * 3600, ge=60)
    socket_timeout_s: float = Field(default=0.25, gt=0)


class WorkerSettings(_Section):
    app_id: str = "streamrec"
    store: Literal["redis", "memory"] = Field(default="redis", description="online feature store backend")
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    web_port: int = Field(default=6066, ge=1, le=65535)
    data_dir: Path = Path(".run/worker")
    batch_size: int = Field(default=2000, ge=1)
    # A batch is what arrived while the previous one was processed; when fewer than batch_size wait, the
    # consumer lingers this long for more (the items agent's take() waits at most this long).
    batch_within_s: float = Field(default=0.01, gt=0)
    commit_interval_s: float = Field(default=1.0, gt=0)
    # How long the broker may hold a fetch open waiting for data.  aiokafka keeps one fetch in flight per
    # broker and leaves partitions with buffered records out of it, so a long wait over idle partitions
    # stalls busy ones that drain meanwhile (Faust's 1,500 ms gave 1.5 s stalls: docs/ingest-performance.md).
    fetch_max_wait_ms: int = Field(default=100, ge=1, le=1500)
    producer_batch_bytes: int = Field(
        default=512 * 1024, ge=16_384, le=1_000_000, description="largest record batch per partition the producer sends"
    )


class ValidationSettings(_Section):
    max_event_bytes: int = Field(default=16_384, ge=256)
    max_future_skew_s: float = Field(default=300.0, ge=0)
    max_price: float = Field(default=1e7, gt=0)


class FeatureSettings(_Section):
    last_n: int = Field(default=20, ge=1, le=200)
    dedupe_ring: int = Field(default=64, ge=1, le=1024)
    popularity_half_life_s: float = Field(default=6 * 3600.0, gt=0)


class PoolSettings(_Section):
    """Candidate pools kept incrementally by the events and items agents."""

    trending_half_life_s: float = Field(default=1800.0, gt=0)
    category_half_life_s: float = Field(default=6 * 3600.0, gt=0)
    covisit_half_life_s: float = Field(default=24 * 3600.0, gt=0)
    covisit_window_s: float = Field(default=1800.0, gt=0)
    covisit_top_k: int = Field(default=50, ge=1)
    covisit_neighbours: int = Field(default=5, ge=1)
    fresh_keep: int = Field(default=200, ge=1)
    catalog_log_keep: int = Field(
        default=100_000, ge=1, description="newest catalog upserts kept for workers to add to their ANN index"
    )


#: Candidates per source before the merge; ``ann`` etc. name ``agents.funnel`` sources.
DEFAULT_SOURCE_QUOTAS: dict[str, int] = {
    "ann": 400,
    "covisit": 150,
    "category": 150,
    "trending": 150,
    "fresh": 50,
    "popular": 200,
}


class ServingSettings(_Section):
    default_k: int = Field(default=10, ge=1)
    max_k: int = Field(default=100, ge=1)
    default_deadline_ms: float = Field(default=250.0, gt=0)
    max_deadline_ms: float = Field(default=10_000.0, gt=0)
    popular_pool_size: int = Field(default=500, ge=1)
    popular_refresh_s: float = Field(default=1.0, gt=0)
    candidate_limit: int = Field(default=1000, ge=10)
    session_cache_users: int = Field(
        default=100_000, ge=0, description="users whose session vector the worker keeps in memory (0: none)"
    )
    seen_last_n: int = Field(default=20, ge=0, description="hard-filter items among the user's last N")
    value_formula: ValueFormula = "expected_revenue"
    mmr_lambda: float = Field(default=0.8, ge=0, le=1)
    epsilon: float = Field(default=0.05, ge=0, le=1, description="share of exploration slots")
    category_cap: int | None = Field(default=None, ge=1)
    precomputed_within_ms: float = Field(
        default=10.0, ge=0, description="serve the user's precomputed list when less budget than this is left (0: off)"
    )
    exploration_policy: ExplorationPolicy = Field(
        default="epsilon", description="epsilon-greedy slots, Thompson sampling over candidate sources, or none"
    )
    allowed_policies: tuple[ExplorationPolicy, ...] = Field(
        default=("epsilon", "thompson", "none"), min_length=1, description="what a request's `exploration` may pick"
    )
    thompson_prior: tuple[float, float] = Field(
        default=(1.0, 1.0), description="Beta(alpha, beta) prior of every source's click rate"
    )
    ann_k: int = Field(default=300, ge=1, description="nearest items the ANN source asks the index for")
    source_quotas: dict[str, int] = Field(
        default_factory=lambda: dict(DEFAULT_SOURCE_QUOTAS),
        description="most candidates each source contributes before the merge (a source not named: all)",
    )
    faiss_threads: int = Field(default=1, ge=1, le=64, description="OpenMP threads of FAISS searches")
    blas_threads: int = Field(
        default=1, ge=1, le=64, description="threads of numpy's BLAS in the worker (matrix products: MMR, recall check)"
    )
    concurrency: int = Field(
        default=1,
        ge=1,
        le=64,
        description="requests one worker answers at once (overlaps store round trips; above 1, Faust may commit "
        "past a request still in flight, so a crash can drop it: keep 1 unless measured)",
    )
    count_kafka_wait: bool = Field(
        default=True,
        description="count the time since a request's sent_at (its wait in Kafka) against its deadline: a request "
        "taken past its deadline gets a deadline_exceeded error at once; needs client and worker clocks in sync",
    )
    request_consumer: Literal["direct", "faust"] = Field(
        default="direct",
        description="fetch requests with a plain consumer on the worker's event loop (no Faust stream hand-off "
        "between threads; one request at a time) or through a Faust agent (needed for concurrency above 1)",
    )
    reply_producer: Literal["dedicated", "shared"] = Field(
        default="dedicated",
        description="replies (and impressions) on producers of their own (no waiting behind impressions and "
        "changelogs for the one produce request aiokafka keeps in flight per broker) or on the app's",
    )
    impression_linger_ms: int = Field(
        default=20,
        ge=0,
        le=1000,
        description="how long an impression waits to share a produce request with the next ones (dedicated "
        "producers only)",
    )

    @model_validator(mode="after")
    def _policies(self) -> Self:
        if self.exploration_policy not in self.allowed_policies:
            raise ValueError(
                f"exploration_policy {self.exploration_policy!r} is not in allowed_policies {self.allowed_policies}"
            )
        if min(self.thompson_prior) <= 0:
            raise ValueError(f"thompson_prior needs positive parameters, got {self.thompson_prior}")
        if self.concurrency > 1 and self.request_consumer == "direct":
            raise ValueError("concurrency above 1 needs request_consumer 'faust' (the direct one answers in order)")
        return self


class MetricsSettings(_Section):
    """Per-worker metrics."""

    enabled: bool = True
    host: str = "127.0.0.1"
    port: int = Field(default=9100, ge=0, le=65535, description="0 picks a free port")
    ann_recall_sample: float = Field(
        default=0.01, ge=0.0, le=1.0, description="share of ANN searches checked against exact search"
    )
    ann_recall_interval_s: float = Field(default=5.0, gt=0, description="how often sampled searches are checked")
    ann_recall_duty: float = Field(
        default=0.2, gt=0.0, le=1.0, description="share of one core the recall check's exact search may keep busy"
    )


class DriftSettings(_Section):
    """Live feature and score drift (PSI) against the served version's training-window reference."""

    enabled: bool = True
    reservoir_size: int = Field(default=2048, ge=16, description="served rows sampled uniformly per window")
    min_samples: int = Field(default=500, ge=1, description="rows a window needs before PSI is computed")
    interval_s: float = Field(default=30.0, gt=0, description="seconds between PSI refreshes")
    seed: int = 0
    snapshot_dir: Path | None = Field(
        default=None, description="write each closed window to <dir>/<app_id>.json (streamrec drift report --from)"
    )


class LagSettings(_Section):
    """Lag exporter and ``streamrec lag``."""

    groups: tuple[str, ...] = Field(default=(), description="consumer groups to watch; empty: every group")
    host: str = "127.0.0.1"
    port: int = Field(default=9308, ge=0, le=65535)
    interval_s: float = Field(default=10.0, gt=0, description="seconds between polls of the broker")
    timeout_s: float = Field(default=5.0, gt=0, description="limit on each broker call of one poll")


ValueFormula = Literal["click", "purchase", "expected_revenue", "weighted"]
ExplorationPolicy = Literal["epsilon", "thompson", "none"]

SHARE_TOLERANCE = 1e-9


class Variant(_Section):
    """One arm: its traffic share and what it changes (``None`` keeps the worker's default)."""

    name: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.-]+$")
    share: float = Field(gt=0.0, le=1.0)
    model_version: str | None = None
    value_formula: ValueFormula | None = None
    mmr_lambda: float | None = Field(default=None, ge=0.0, le=1.0)
    epsilon: float | None = Field(default=None, ge=0.0, le=1.0)


class Experiment(_Section):
    """Variants with shares summing to 1 and unique names; the first variant is the control.

    >>> Experiment(name="x", variants=(Variant(name="a", share=0.5), Variant(name="b", share=0.4)))
    Traceback (most recent call last):
    ...
    pydantic_core._pydantic_core.ValidationError: 1 validation error for Experiment
      Value error, experiment 'x': variant shares sum to 0.9, not 1 [...]
    ...
    """

    name: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.-]+$")
    variants: tuple[Variant, ...] = Field(min_length=1)
    enabled: bool = True

    @model_validator(mode="after")
    def _check(self) -> Self:
        names = [v.name for v in self.variants]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"experiment {self.name!r}: variant names repeat: {dupes}")
        total = math.fsum(v.share for v in self.variants)
        if abs(total - 1.0) > SHARE_TOLERANCE:
            raise ValueError(f"experiment {self.name!r}: variant shares sum to {total:g}, not 1 {names}")
        return self

    @property
    def control(self) -> Variant:
        return self.variants[0]

    def variant(self, name: str) -> Variant:
        for v in self.variants:
            if v.name == name:
                return v
        valid = [v.name for v in self.variants]
        raise ConfigError(f"experiment {self.name!r} has no variant {name!r}; variants: {valid}")


class ExperimentSettings(_Section):
    """The ``experiments`` settings section: experiments with unique names (``STREAMREC_EXPERIMENTS__ACTIVE`` JSON)."""

    active: tuple[Experiment, ...] = ()

    @model_validator(mode="after")
    def _unique(self) -> Self:
        names = [e.name for e in self.active]
        if len(set(names)) != len(names):
            raise ValueError(f"experiment names repeat: {names}")
        return self


class BatchSettings(_Section):
    """``streamrec batch-score`` and the jobs it records."""

    jobs_dir: Path = Path(".run/jobs")
    rec_ttl_s: int = Field(default=2 * 24 * 3600, ge=60, description="lifetime of precomputed lists in Redis")
    scan_count: int = Field(default=1000, ge=1, description="keys looked at per SCAN page")
    chunk_size: int = Field(default=256, ge=1, description="users read, scored and written together")
    concurrency: int = Field(default=8, ge=1, description="users of a chunk in flight at once")


class ModelSettings(_Section):
    """The registry, how workers follow its champion, and shadow scoring of a challenger."""

    registry_dir: Path = Path(".registry")
    poll_interval_s: float = Field(
        default=2.0,
        gt=0,
        description="how often workers look for a new champion (the model-updates topic's safety net)",
    )
    updates_timeout_s: float = Field(default=10.0, gt=0, description="limit on publishing to the model-updates topic")
    shadow_version: str | None = Field(default=None, description="challenger scored beside the champion, never served")
    shadow_k: int = Field(default=10, ge=1, le=1000, description="top-k compared between champion and challenger")
    shadow_sample: float = Field(default=1.0, ge=0.0, le=1.0, description="share of answered requests shadow-scored")
    shadow_queue: int = Field(default=256, ge=1, description="pending shadow jobs kept; more are dropped and counted")
    catalog_poll_interval_s: float = Field(
        default=1.0, gt=0, description="how often workers add new catalog items to their ANN index"
    )


class Settings(BaseSettings):
    """Everything configurable in streamrec; build once with :func:`load_settings` and pass it down."""

    model_config = SettingsConfigDict(env_prefix="STREAMREC_", env_nested_delimiter="__", frozen=True, extra="forbid")

    kafka: KafkaSettings = KafkaSettings()
    redis: RedisSettings = RedisSettings()
    worker: WorkerSettings = WorkerSettings()
    validation: ValidationSettings = ValidationSettings()
    features: FeatureSettings = FeatureSettings()
    pools: PoolSettings = PoolSettings()
    serving: ServingSettings = ServingSettings()
    models: ModelSettings = ModelSettings()
    metrics: MetricsSettings = MetricsSettings()
    drift: DriftSettings = DriftSettings()
    lag: LagSettings = LagSettings()
    experiments: ExperimentSettings = ExperimentSettings()
    batch: BatchSettings = BatchSettings()


def load_settings(**overrides: object) -> Settings:
    """Read the environment (and apply explicit overrides, which win) into a frozen tree."""
    return Settings(**overrides)  # type: ignore[arg-type]


def child_env(settings: Settings) -> dict[str, str]:
    """The environment for a child process (worker, echo) that must see exactly these settings."""
    import json
    import os

    env = {k: v for k, v in os.environ.items() if not k.startswith("STREAMREC_")}
    for section, model in settings:
        plain = model.model_dump(mode="json")
        for name, value in model:
            if value is None:
                continue
            if isinstance(value, SecretStr):
                text = value.get_secret_value()
            elif isinstance(plain[name], (list, dict)):
                text = json.dumps(plain[name])  # complex fields are JSON in the environment
            else:
                text = str(value)
            env[f"STREAMREC_{section.upper()}__{name.upper()}"] = text
    return env
