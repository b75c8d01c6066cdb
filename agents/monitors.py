"""Worker monitors on timers: drift PSI refresh and the ANN recall check (in a thread, off the event loop)."""

from __future__ import annotations

import asyncio

import faust

from agents.runtime import Runtime


async def check_recall(rt: Runtime) -> list[float]:
    """Recompute the sampled ANN searches exactly in a worker thread; the sampler reports to the metrics."""
    sampler = rt.recall
    return await asyncio.to_thread(sampler.check) if sampler is not None else []


def register(app: faust.App, rt: Runtime) -> None:
    """Add the drift refresh (``drift.interval_s``) and the recall check (``metrics.ann_recall_interval_s``)."""

    @app.timer(interval=rt.settings.drift.interval_s)  # type: ignore[untyped-decorator]
    async def refresh_drift() -> None:
        rt.drift.refresh()

    @app.timer(interval=rt.settings.metrics.ann_recall_interval_s)  # type: ignore[untyped-decorator]
    async def sample_ann_recall() -> None:
        await check_recall(rt)
