"""What the agents share in one worker: settings, clock, the online store and small read-through caches."""

from __future__ import annotations

import logging
from collections.abc import MutableMapping, Sequence
from dataclasses import dataclass, field
from typing import NamedTuple

from mode import Service
from prometheus_client import CollectorRegistry

from agents.ann_recall import RecallSampler, build_recall
from agents.drift import DriftRecorder, NullDrift, build_drift
from agents.experiments import assign, variant_label
from agents.funnel.pipeline import Funnel
from agents.funnel.thompson import BetaPrior, SourcePosteriors
from agents.serving_setup import build_funnel, funnel_config, pinned_versions, serving_experiment
from state.catalog_table import CatalogTable
from state.features import FeatureConfig, UserState, decode_state
from state.item_tower import ItemTower
from state.items import ItemRecord
from state.live_index import LiveIndex
from state.pools import PoolConfig
from state.registry import LoadedVersion
from state.session_tower import SessionTower
from state.session_vectors import SessionVectors
from state.store import OnlineFeatureStore
from streams.clock import Clock, SystemClock
from streams.errors import ConfigError, StreamrecError
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


def set_search_threads(n: int, blas: int | None = None) -> None:
    """FAISS searches on ``n`` OpenMP threads; one query at a time gains nothing from more on a shared box.

    ``blas`` caps numpy's BLAS pool too: OpenBLAS threads spin for a while after each product, so the
    recall check's matrix products in a side thread kept both cores of a small machine busy and the
    serving loop's answers waited behind them (p99 ~100 ms every 5 s over a million items).
    """
    import faiss

    faiss.omp_set_num_threads(n)
    if blas is not None:
        from threadpoolctl import threadpool_limits

        threadpool_limits(limits=blas, user_api="blas")


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


def load_side_versions(settings: Settings) -> dict[str, LoadedVersion]:
    """Versions served beside the champion: those experiment arms pin (must load) and the shadow (may fail)."""
    from state.registry import FileRegistry, warm_up

    registry = FileRegistry(settings.models.registry_dir)
    out: dict[str, LoadedVersion] = {}
    for version in pinned_versions(serving_experiment(settings.experiments)):
        try:
            out[version] = registry.load(version)
        except StreamrecError as exc:
            raise ConfigError(f"experiment arm pins model {version}, which cannot be loaded: {exc}") from exc
    shadow = settings.models.shadow_version
    if shadow is not None and shadow not in out:
        try:
            out[shadow] = registry.load(shadow)
        except StreamrecError as exc:
            log.error("shadow model %s cannot be loaded, shadow scoring is off: %s", shadow, exc)
    for loaded in out.values():
        warm_up(loaded)
    return out


class Arm(NamedTuple):
    """What serves one user: the funnel, the variant label recorded on responses, a pinned version (or None)."""

    funnel: Funnel
    variant: str
    pinned: str | None = None


def live_parts(loaded: LoadedVersion | None) -> tuple[LiveIndex | None, ItemTower | None]:
    """The version's index made growable, and its content item tower (None where the version lacks one)."""
    if loaded is None or loaded.index is None:
        return None, None
    graph = loaded.spec.graphs.get("item_tower")
    usable = graph is not None and "item_tower" in loaded.sessions
    usable = usable and graph is not None and ItemTower.has_content(t.name for t in graph.inputs)
    return LiveIndex(loaded.index, loaded.item_ids), ItemTower(loaded) if usable else None


@dataclass
class Runtime:
    """Per-worker dependencies handed to every agent's ``register``.

    ``versions`` holds the loaded versions served beside the champion (pinned by experiment arms, and the
    shadow challenger); they stay loaded while the champion changes.
    """

    settings: Settings
    store: OnlineFeatureStore
    clock: Clock = field(default_factory=SystemClock)
    versions: dict[str, LoadedVersion] = field(default_factory=dict)
    topics: TopicNames = field(init=False)
    features: FeatureConfig = field(init=False)
    pools: PoolConfig = field(init=False)
    popular: list[tuple[str, float]] = field(default_factory=list)
    catalog: MutableMapping[str, ItemRecord] = field(default_factory=CatalogTable)
    model: LoadedVersion | None = None
    tower: SessionTower | None = None
    # The served version's ANN index, grown in place by new catalog items, and the tower that embeds them.
    live_index: LiveIndex | None = None
    item_tower: ItemTower | None = None
    funnel: Funnel = field(init=False)
    experiment: Experiment | None = field(init=False)
    arm_funnels: dict[str, Funnel] = field(init=False)
    shadow: Funnel | None = field(init=False, default=None)
    registry: CollectorRegistry = field(default_factory=CollectorRegistry)
    metrics: WorkerMetrics = field(init=False)
    drift: DriftRecorder = field(default_factory=NullDrift)
    recall: RecallSampler | None = None
    # Thompson sampling's click/impression counts per source: this worker's lists and the clicks on them.
    posteriors: SourcePosteriors = field(init=False)
    # Session vectors of users whose state is unchanged since they were embedded (events agent or a request).
    session_vectors: SessionVectors = field(init=False)
    # The events agent binds this to its Faust table's local store (keys are user ids as bytes).
    local_users: MutableMapping[bytes, UserState | bytes] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.topics = topic_names(self.settings.kafka)
        self.features = FeatureConfig.from_settings(self.settings.features)
        self.pools = PoolConfig(**self.settings.pools.model_dump())
        self.metrics = build_metrics(self.settings.metrics, self.registry, self.settings.worker.app_id)
        self.experiment = serving_experiment(self.settings.experiments)
        missing = [v for v in pinned_versions(self.experiment) if v not in self.versions]
        if missing:
            raise ConfigError(f"experiment arms pin model versions {missing} that are not loaded")
        self.posteriors = SourcePosteriors(BetaPrior(*self.settings.serving.thompson_prior))
        self.session_vectors = SessionVectors(self.settings.serving.session_cache_users)
        self._build_funnels(None)

    @classmethod
    def build(cls, settings: Settings, clock: Clock | None = None) -> Runtime:
        set_search_threads(settings.serving.faiss_threads, settings.serving.blas_threads)
        rt = cls(
            settings=settings,
            store=build_store(settings),
            clock=clock or SystemClock(),
            versions=load_side_versions(settings),
        )
        rt.use_model(load_champion(settings))
        return rt

    def use_model(self, loaded: LoadedVersion | None) -> None:
        """Swap the served model version (None: serve without one, flagged as fallback)."""
        self.model = loaded
        self.metrics.model_loaded(loaded.manifest.version if loaded is not None else None)
        self._build_monitors(loaded)
        self.tower = SessionTower(loaded) if loaded is not None and "user_tower" in loaded.sessions else None
        if self.tower is not None and self.tower.max_len > self.features.last_n:
            # the tower was trained on up to max_len recent items; the state keeps fewer: a training-serving skew
            log.warning(
                "model %s reads %d recent items but the state keeps %d (STREAMREC_FEATURES__LAST_N)",
                self.tower.version,
                self.tower.max_len,
                self.features.last_n,
            )
        self.live_index, self.item_tower = live_parts(loaded)
        self._build_funnels(loaded)

    def _build_monitors(self, loaded: LoadedVersion | None) -> None:
        """Drift against the version's training reference and ANN recall sampling (no-ops with metrics off)."""
        on = self.settings.metrics.enabled
        reference = loaded.manifest.drift if loaded is not None and on else None
        worker = self.settings.worker.app_id
        self.drift = build_drift(self.settings.drift, reference, self.metrics, self.model_version, worker=worker)
        index, ids = (loaded.index, loaded.item_ids) if loaded is not None else (None, ())
        rate = self.settings.metrics.ann_recall_sample
        duty = self.settings.metrics.ann_recall_duty
        self.recall = build_recall(
            index, ids, self.metrics, enabled=on, rate=rate, seed=self.settings.drift.seed, duty=duty
        )

    def _build_funnels(self, loaded: LoadedVersion | None) -> None:
        serving = self.settings.serving

        def make(variant: Variant | None, pinned: str | None = None) -> Funnel:
            return build_funnel(
                store=self.store,
                pools=self.pools,
                features=self.features,
                loaded=self.versions[pinned] if pinned is not None else loaded,
                catalog=self.catalog,
                config=funnel_config(serving, serving.max_k, variant),
                # Every funnel embeds the session from the local state with its version's user tower (~50 us)
                # instead of reading the vector the events agent stored: the same numbers, one Redis round
                # trip fewer before the ANN search, and a session vector even while Redis is down.
                own_vectors=True,
                recall=self.recall,
                posteriors=self.posteriors,
                ann_k=serving.ann_k,
                live=self.live_index if pinned is None else None,
                session_vectors=self.session_vectors,
            )

        self.funnel = make(None)
        arms = self.experiment.variants if self.experiment is not None else ()
        self.arm_funnels = {v.name: make(v, v.model_version) for v in arms}
        shadow = self.settings.models.shadow_version
        self.shadow = make(None, shadow) if shadow is not None and shadow in self.versions else None

    def catalog_changed(self, item_ids: Sequence[str]) -> None:
        """Items just written to the local catalog: the funnels searching the live index learn their rows."""
        live = self.live_index
        if live is None or not item_ids or not isinstance(self.catalog, CatalogTable):
            return
        positions, rows = live.positions(item_ids), self.catalog.rows(item_ids)
        for funnel in (self.funnel, *self.arm_funnels.values(), self.shadow):
            if funnel is not None:
                funnel.rows.learn_catalog_rows(live.item_ids, positions, rows)

    def arm_for(self, user_id: str) -> Arm:
        """The funnel serving ``user_id``, the variant label recorded on responses and impressions, its pin."""
        if self.experiment is None:
            return Arm(self.funnel, "control")
        arm = assign(self.experiment, user_id)
        return Arm(self.arm_funnels[arm.name], variant_label(self.experiment, arm), arm.model_version)

    def funnel_for(self, user_id: str) -> tuple[Funnel, str]:
        """The funnel serving ``user_id`` and the variant label recorded on responses and impressions."""
        arm = self.arm_for(user_id)
        return arm.funnel, arm.variant

    @property
    def shadow_version(self) -> str | None:
        """The challenger scored in shadow, when it is loaded."""
        return self.settings.models.shadow_version if self.shadow is not None else None

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
