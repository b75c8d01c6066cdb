"""Garbage-collector pauses, timed: a collection that stalls a worker thread is logged with its length.

A serving worker's latency spikes are often the collector rescanning long-lived objects; this makes them
visible in the worker's log instead of leaving them to be guessed from a latency histogram. Each pause is
logged with the thread it ran on and its CPU time: a collection in another thread stalls the event loop
only through the GIL, and its wall time there can include the loop's own turn.
"""

from __future__ import annotations

import gc
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

log = logging.getLogger(__name__)


@dataclass(slots=True)
class GcWatch:
    """Times every collection; pauses of at least ``warn_ms`` (wall clock) are logged and counted in ``slow``.

    >>> w = GcWatch(warn_ms=0.0, clock=iter([1.0, 1.25]).__next__, cpu=iter([0.0, 0.2]).__next__)
    >>> w("start", {"generation": 2}) or w("stop", {"generation": 2, "collected": 0})
    >>> w.slow, w.longest_ms
    (1, 250.0)
    """

    warn_ms: float = 20.0
    clock: Callable[[], float] = time.perf_counter
    cpu: Callable[[], float] = time.thread_time
    slow: int = 0
    longest_ms: float = 0.0
    _started: tuple[float, float] = field(default=(0.0, 0.0), repr=False)

    def __call__(self, phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            self._started = (self.clock(), self.cpu())
            return
        ms = (self.clock() - self._started[0]) * 1000.0
        self.longest_ms = max(self.longest_ms, ms)
        if ms >= self.warn_ms:
            self.slow += 1
            cpu_ms = (self.cpu() - self._started[1]) * 1000.0
            log.warning(
                "gc generation %s paused %.1f ms (%.1f ms CPU, thread %s, %s collected)",
                info["generation"],
                ms,
                cpu_ms,
                threading.current_thread().name,
                info["collected"],
            )


def install(warn_ms: float = 20.0) -> GcWatch:
    """Register a :class:`GcWatch` with the collector (once per process) and return it."""
    for cb in gc.callbacks:
        if isinstance(cb, GcWatch):
            return cb
    watch = GcWatch(warn_ms=warn_ms)
    gc.callbacks.append(watch)
    return watch
