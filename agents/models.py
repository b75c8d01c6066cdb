"""Model lifecycle online: follow the registry's champion, load a new version off the event loop, warm it up,
swap it in atomically, and keep serving the old one when loading fails.

Workers look at the registry when the ``model-updates`` control topic announces a change (at once) and on
a timer (the safety net for a missed or unpublished update).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field

import faust
from mode import Service

from agents.runtime import Runtime
from state.registry import FileRegistry, LoadedVersion, warm_up
from streams.errors import StreamrecError
from streams.records import ModelUpdate

log = logging.getLogger(__name__)
RETRY_FAILED_S = 30.0


@dataclass
class Follower:
    """Remembers what was tried, so a broken version is retried only every ``RETRY_FAILED_S``."""

    registry: FileRegistry
    failed: dict[str, float] = field(default_factory=dict)
    # The timer and the control-topic listener may both ask at once: one load at a time.
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)

    def wanted(self, rt: Runtime, champion: str | None, now: float) -> str | None:
        """The champion to load now, or None (already served, none promoted, or failed recently)."""
        if champion is None or champion == rt.model_version:
            return None
        if now - self.failed.get(champion, -RETRY_FAILED_S) < RETRY_FAILED_S:
            return None
        return champion

    def on_update(self, update: ModelUpdate) -> None:
        """An operator's explicit promote retries a version at once, even one that failed recently."""
        if update.action == "promote":
            self.failed.pop(update.version, None)


async def follow_once(rt: Runtime, follower: Follower) -> str | None:
    """Load and swap in the champion if it changed; return the version now served when a swap happened."""
    async with follower.lock:
        return await _follow(rt, follower)


async def _follow(rt: Runtime, follower: Follower) -> str | None:
    champion = follower.registry.champion()
    if champion is None and rt.model is not None:  # the champion was retired: serve without a model
        log.warning("registry has no champion any more; serving %s without a model", rt.model_version)
        rt.use_model(None)
        return None
    version = follower.wanted(rt, champion, rt.clock.now())
    if version is None:
        return None
    try:
        loaded = await load_warm(follower.registry, version)
    except (StreamrecError, OSError) as exc:
        follower.failed[version] = rt.clock.now()
        rt.metrics.model_load(False)
        log.error("model %s failed to load, still serving %s: %s", version, rt.model_version, exc)
        return None
    rt.use_model(loaded)  # one assignment on the event loop: requests see the old or the new model, never a mix
    rt.metrics.model_load(True)
    log.info("now serving model %s", version)
    return version


async def load_warm(registry: FileRegistry, version: str) -> LoadedVersion:
    """Verify, open and warm up ``version`` in a thread, so the event loop keeps serving meanwhile."""
    loaded = await asyncio.to_thread(registry.load, version)
    await asyncio.to_thread(warm_up, loaded)
    return loaded


async def handle_update(rt: Runtime, follower: Follower, update: ModelUpdate) -> str | None:
    """React to one control-topic record: look at the registry now; return the version swapped in, if any."""
    log.info("model-updates: %s %s", update.action, update.version)
    follower.on_update(update)
    return await follow_once(rt, follower)


UpdateSource = Callable[[], AsyncIterator[ModelUpdate]]


class UpdatesListener(Service):
    """Reads the control topic for as long as the worker runs; reconnects after an outage (polling goes on)."""

    def __init__(self, rt: Runtime, follower: Follower, source: UpdateSource, retry_s: float = 5.0) -> None:
        super().__init__()
        self.rt, self.follower, self.source, self.retry_s = rt, follower, source, retry_s
        self.handled = 0

    @Service.task
    async def _listen(self) -> None:
        while not self.should_stop:
            try:
                async for update in self.source():
                    await handle_update(self.rt, self.follower, update)
                    self.handled += 1
            except StreamrecError as exc:
                log.warning("model-updates listener: %s; retrying in %.0f s (polling continues)", exc, self.retry_s)
            await self.sleep(self.retry_s)


def register(app: faust.App, rt: Runtime) -> None:
    """Follow the champion on every worker: the control topic (read by each worker in full) and a poll timer."""
    from streams.model_updates import follow_updates

    follower = Follower(FileRegistry(rt.settings.models.registry_dir))
    app.add_dependency(UpdatesListener(rt, follower, lambda: follow_updates(rt.settings.kafka)))

    @app.timer(interval=rt.settings.models.poll_interval_s)  # type: ignore[untyped-decorator]
    async def follow_champion() -> None:
        await follow_once(rt, follower)
