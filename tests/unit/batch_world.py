"""A tiny trained model in a registry and an in-memory store holding users, items and popularity it knows."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from models.pipeline import build_version
from models.synthetic import generate, write_jsonl
from state.feature_config import EventView, FeatureConfig
from state.features import apply_events, new_user_state
from state.items import ItemRecord
from state.memory_store import MemoryFeatureStore
from state.popularity import popularity_increments
from state.registry import FileRegistry
from state.session_tower import SessionTower
from state.store import WriteBatch
from state.user_state import UserState
from streams.settings import BatchSettings, ModelSettings, Settings, WorkerSettings, load_settings


@dataclass
class BatchWorld:
    settings: Settings
    registry: FileRegistry
    users: dict[str, UserState]
    items: dict[str, ItemRecord]
    now: float


def train_tiny(root: Path) -> tuple[FileRegistry, dict[str, UserState], dict[str, ItemRecord], float]:
    """Train the ``tiny`` config on a synthetic shop (40 users, 30 items), publish and promote it."""
    world = generate(5, n_users=40, n_items=30, requests_per_user=8)
    data, staging = root / "data", root / "staging"
    data.mkdir()
    write_jsonl(world, data / "events.jsonl", data / "catalog.jsonl")
    build_version("sim", data, staging, config="tiny")
    registry = FileRegistry(root / "registry")
    version = registry.publish(staging, split="sim/leave-last-out", metrics={"ndcg@10": 0.1}, data_window={}).version
    registry.promote(version)
    items = {c.item_id: ItemRecord.from_update(c) for c in world.catalog}
    cfg = FeatureConfig()
    users: dict[str, UserState] = {}
    for ev in world.events:
        view = EventView.from_event(ev, items[ev.item_id].category)
        apply_events(users.setdefault(ev.user_id, new_user_state(ev.user_id)), [view], cfg)
    now = max(ev.ts.timestamp() for ev in world.events) + 60.0
    return registry, users, items, now


def settings_for(root: Path) -> Settings:
    return load_settings(
        models=ModelSettings(registry_dir=root / "registry"),
        worker=WorkerSettings(store="memory"),
        batch=BatchSettings(jobs_dir=root / "jobs", chunk_size=7, concurrency=3),
    )


async def fill_store(w: BatchWorld) -> MemoryFeatureStore:
    """A fresh store with every user's state and session vector, the catalog and popularity."""
    store = MemoryFeatureStore()
    champion = w.registry.champion()
    assert champion is not None
    tower = SessionTower(w.registry.load(champion))
    vectors = tower.embed(list(w.users.values()))
    views = [EventView(f"p{n}", "view", "x", i, w.now - 600, None, None, None) for n, i in enumerate(w.items)]
    await store.write_batch(
        WriteBatch(
            "test",
            users=w.users,
            user_vectors=vectors,
            items=w.items,
            popularity=popularity_increments(views, w.now - 600, FeatureConfig()),
            popularity_ref=w.now - 600,
        )
    )
    return store
