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
    batch_within_s: float = Field(default=0.05, gt=0)
    commit_interval_s: float = Field(default=1.0, gt=0)


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
    seen_last_n: int = Field(default=20, ge=0, description="hard-filter items among the user's last N")
    value_formula: ValueFormula = "expected_revenue"
    mmr_lambda: float = Field(default=0.8, ge=0, le=1)
    epsilon: float = Field(default=0.05, ge=0, le=1, description="share of exploration slots")
    category_cap: int | None = Field(default=None, ge=1)
    ann_k: int = Field(default=300, ge=1, description="nearest items the ANN source asks the index for")
    source_quotas: dict[str, int] = Field(
        default_factory=lambda: dict(DEFAULT_SOURCE_QUOTAS),
        description="most candidates each source contributes before the merge (a source not named: all)",
    )
    faiss_threads: int = Field(default=1, ge=1, le=64, description="OpenMP threads of FAISS searches")
    concurrency: int = Field(
        default=1, ge=1, le=64, description="requests one worker answers at once (overlaps their store round trips)"
    )


class MetricsSettings(_Section):
    """Per-worker metrics."""

    enabled: bool = True
    host: str = "127.0.0.1"
    port: int = Field(default=9100, ge=0, le=65535, description="0 picks a free port")


class LagSettings(_Section):
    """Lag exporter and ``streamrec lag``."""

    groups: tuple[str, ...] = Field(default=(), description="consumer groups to watch; empty: every group")
    host: str = "127.0.0.1"
    port: int = Field(default=9308, ge=0, le=65535)
    interval_s: float = Field(default=10.0, gt=0, description="seconds between polls of the broker")
    timeout_s: float = Field(default=5.0, gt=0, description="limit on each broker call of one poll")


ValueFormula = Literal["click", "purchase", "expected_revenue", "weighted"]

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


class ModelSettings(_Section):
    registry_dir: Path = Path(".registry")
    poll_interval_s: float = Field(default=2.0, gt=0, description="how often workers look for a new champion")


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
    lag: LagSettings = LagSettings()
    experiments: ExperimentSettings = ExperimentSettings()


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
