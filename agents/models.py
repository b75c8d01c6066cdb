"""Model lifecycle online: follow the registry's champion, load a new version off the event loop, warm it up,
swap it in atomically, and keep serving the old one when loading fails."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field

import faust
import numpy as np

from agents.runtime import Runtime
from state.registry import FileRegistry, LoadedVersion
from streams.errors import StreamrecError

log = logging.getLogger(__name__)
RETRY_FAILED_S = 30.0


@dataclass
class Follower:
    """Remembers what was tried, so a broken version is retried only every ``RETRY_FAILED_S``."""

    registry: FileRegistry
    failed: dict[str, float] = field(default_factory=dict)

    def wanted(self, rt: Runtime, champion: str | None, now: float) -> str | None:
        """The champion to load now, or None (already served, none promoted, or failed recently)."""
        if champion is None or champion == rt.model_version:
            return None
        if now - self.failed.get(champion, -RETRY_FAILED_S) < RETRY_FAILED_S:
            return None
        return champion


def warm_up(loaded: LoadedVersion) -> None:
    """Run every graph once on a default-shaped batch, so the first real request pays no lazy init."""
    for role, session in loaded.sessions.items():
        graph = loaded.spec.graphs[role]
        feeds = {}
        for t in graph.inputs:
            shape = [2 if d is None else int(d) for d in t.shape]
            dtype = np.int64 if t.dtype == "int64" else np.float32
            feeds[t.name] = np.full(shape, -1 if dtype is np.int64 else 0, dtype=dtype)
        session.run(None, feeds)


async def follow_once(rt: Runtime, follower: Follower) -> str | None:
    """Load and swap in the champion if it changed; return the version now served when a swap happened."""
    champion = follower.registry.champion()
    if champion is None and rt.model is not None:  # the champion was retired: serve without a model
        log.warning("registry has no champion any more; serving %s without a model", rt.model_version)
        rt.use_model(None)
        return None
    version = follower.wanted(rt, champion, rt.clock.now())
    if version is None:
        return None
    try:
        loaded = await asyncio.to_thread(follower.registry.load, version)
        await asyncio.to_thread(warm_up, loaded)
    except (StreamrecError, OSError) as exc:
        follower.failed[version] = rt.clock.now()
        rt.metrics.model_load(False)
        log.error("model %s failed to load, still serving %s: %s", version, rt.model_version, exc)
        return None
    rt.use_model(loaded)  # one assignment on the event loop: requests see the old or the new model, never a mix
    rt.metrics.model_load(True)
    log.info("now serving model %s", version)
    return version


def register(app: faust.App, rt: Runtime) -> None:
    """Poll the registry's champion on every worker (each must swap, so this is not a group-consumed topic)."""
    follower = Follower(FileRegistry(rt.settings.models.registry_dir))

    @app.timer(interval=rt.settings.models.poll_interval_s)  # type: ignore[untyped-decorator]
    async def follow_champion() -> None:
        await follow_once(rt, follower)
