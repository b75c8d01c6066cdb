"""What the agents share in one worker: settings, clock, the online store and small read-through caches."""

from __future__ import annotations

import logging
from collections.abc import MutableMapping
from dataclasses import dataclass, field

from mode import Service

from state.features import FeatureConfig, UserState, decode_state
from state.items import ItemRecord
from state.pools import PoolConfig
from state.store import OnlineFeatureStore
from streams.clock import Clock, SystemClock
from streams.settings import Settings
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
    catalog: dict[str, ItemRecord] = field(default_factory=dict)
    # The events agent binds this to its Faust table's local store (keys are user ids as bytes).
    local_users: MutableMapping[bytes, UserState | bytes] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.topics = topic_names(self.settings.kafka)
        self.features = FeatureConfig.from_settings(self.settings.features)
        self.pools = PoolConfig(**self.settings.pools.model_dump())

    @classmethod
    def build(cls, settings: Settings, clock: Clock | None = None) -> Runtime:
        return cls(settings=settings, store=build_store(settings), clock=clock or SystemClock())

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
    """Closes the runtime's connections when the worker stops."""

    def __init__(self, runtime: Runtime) -> None:
        super().__init__()
        self.runtime = runtime

    async def on_stop(self) -> None:
        await self.runtime.store.close()
