"""What the agents share in one worker: settings, clock, the online store and small read-through caches."""

from __future__ import annotations

import logging
from collections.abc import MutableMapping
from dataclasses import dataclass, field

from mode import Service
from prometheus_client import CollectorRegistry

from agents.experiments import assign, variant_label
from agents.funnel.pipeline import Funnel
from agents.serving_setup import build_funnel, funnel_config, serving_experiment
from state.catalog_table import CatalogTable
from state.features import FeatureConfig, UserState, decode_state
from state.items import ItemRecord
from state.pools import PoolConfig
from state.registry import LoadedVersion
from state.session_tower import SessionTower
from state.store import OnlineFeatureStore
from streams.clock import Clock, SystemClock
from streams.errors import StreamrecError
from streams.metrics import MetricsServer, WorkerMetrics, build_metrics, serve_metrics
from streams.settings import Experiment, Settings, Variant
from streams.topics import TopicNames, topic_names

log = logging.getLogger(__name__)


def build_store(settings: Settings) -> OnlineFeatureStore:
    """Open the configured online store backend (no I/O until first use)."""
    if settings.worker.store == "memory":
        from state.memory_store import MemoryFeatureStore

        return MemoryFeatureStore(
            key_prefix=settings.redis.key_prefix,
            user_ttl_s=settings.redis.user_ttl_s,
            popularity_half_life_s=settings.features.popularity_half_life_s,
        )
    from state.redis_store import RedisFeatureStore

    return RedisFeatureStore(settings.redis, popularity_half_life_s=settings.features.popularity_half_life_s)


def set_search_threads(n: int) -> None:
    """FAISS searches on ``n`` OpenMP threads; one query at a time gains nothing from more on a shared box."""
    import faiss

    faiss.omp_set_num_threads(n)


def load_champion(settings: Settings) -> LoadedVersion | None:
    """The registry's champion, verified; None (and a log line) when there is none or it cannot load."""
    from state.registry import FileRegistry

    registry = FileRegistry(settings.models.registry_dir)
    try:
        version = registry.champion()
        return registry.load(version) if version is not None else None
    except StreamrecError as exc:
        log.error("model registry %s: %s; serving without a model", settings.models.registry_dir, exc)
        return None


@dataclass
class Runtime:
    """Per-worker dependencies handed to every agent's ``register``."""

    settings: Settings
    store: OnlineFeatureStore
    clock: Clock = field(default_factory=SystemClock)
    topics: TopicNames = field(init=False)
    features: FeatureConfig = field(init=False)
    pools: PoolConfig = field(init=False)
    popular: list[tuple[str, float]] = field(default_factory=list)
    catalog: MutableMapping[str, ItemRecord] = field(default_factory=CatalogTable)
    model: LoadedVersion | None = None
    tower: SessionTower | None = None
    funnel: Funnel = field(init=False)
    experiment: Experiment | None = field(init=False)
    arm_funnels: dict[str, Funnel] = field(init=False)
    registry: CollectorRegistry = field(default_factory=CollectorRegistry)
    metrics: WorkerMetrics = field(init=False)
    # The events agent binds this to its Faust table's local store (keys are user ids as bytes).
    local_users: MutableMapping[bytes, UserState | bytes] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.topics = topic_names(self.settings.kafka)
        self.features = FeatureConfig.from_settings(self.settings.features)
        self.pools = PoolConfig(**self.settings.pools.model_dump())
        self.metrics = build_metrics(self.settings.metrics, self.registry, self.settings.worker.app_id)
        self.experiment = serving_experiment(self.settings.experiments)
        self._build_funnels(None)

    @classmethod
    def build(cls, settings: Settings, clock: Clock | None = None) -> Runtime:
        set_search_threads(settings.serving.faiss_threads)
        rt = cls(settings=settings, store=build_store(settings), clock=clock or SystemClock())
        rt.use_model(load_champion(settings))
        return rt

    def use_model(self, loaded: LoadedVersion | None) -> None:
        """Swap the served model version (None: serve without one, flagged as fallback)."""
        self.model = loaded
        self.metrics.model_loaded(loaded.manifest.version if loaded is not None else None)
        self.tower = SessionTower(loaded) if loaded is not None and "user_tower" in loaded.sessions else None
        self._build_funnels(loaded)

    def _build_funnels(self, loaded: LoadedVersion | None) -> None:
        serving = self.settings.serving

        def make(variant: Variant | None) -> Funnel:
            return build_funnel(
                store=self.store,
                pools=self.pools,
                features=self.features,
                loaded=loaded,
                catalog=self.catalog,
                config=funnel_config(serving, serving.max_k, variant),
                ann_k=serving.ann_k,
            )

        self.funnel = make(None)
        arms = self.experiment.variants if self.experiment is not None else ()
        self.arm_funnels = {v.name: make(v) for v in arms}

    def funnel_for(self, user_id: str) -> tuple[Funnel, str]:
        """The funnel serving ``user_id`` and the variant label recorded on responses and impressions."""
        if self.experiment is None:
            return self.funnel, "control"
        arm = assign(self.experiment, user_id)
        return self.arm_funnels[arm.name], variant_label(self.experiment, arm)

    @property
    def model_version(self) -> str:
        return self.model.manifest.version if self.model is not None else "none"

    def user_state(self, user_id: str) -> UserState | None:
        """The user's state from this worker's table partition, decoded on first touch."""
        key = user_id.encode()
        raw = self.local_users.get(key)
        if raw is None or not isinstance(raw, bytes):
            return raw
        state = decode_state(raw)
        self.local_users[key] = state
        return state


class RuntimeService(Service):
    """Serves the worker's ``/metrics`` while it runs; closes the runtime's connections when it stops."""

    def __init__(self, runtime: Runtime) -> None:
        super().__init__()
        self.runtime = runtime
        self._server: MetricsServer | None = None

    async def on_start(self) -> None:
        cfg = self.runtime.settings.metrics
        if not cfg.enabled:
            return
        try:
            self._server = serve_metrics(self.runtime.registry, cfg.port, cfg.host)
            log.info("metrics on http://%s:%d/metrics", cfg.host, self._server.port)
        except OSError as exc:  # a taken port must not stop a worker from processing
            log.error("metrics endpoint %s:%d unavailable: %s", cfg.host, cfg.port, exc)

    async def on_stop(self) -> None:
        if self._server is not None:
            self._server.close()
        await self.runtime.store.close()
