"""Garbage-collector pauses, timed: a full collection that stalls the event loop is logged with its length.

A serving worker's latency spikes are often the collector rescanning long-lived objects; this makes them
visible in the worker's log instead of leaving them to be guessed from a latency histogram.
"""

from __future__ import annotations

import gc
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

log = logging.getLogger(__name__)


@dataclass(slots=True)
class GcWatch:
    """Times every collection; pauses of at least ``warn_ms`` are logged and counted in ``slow``.

    >>> w = GcWatch(warn_ms=0.0, clock=iter([1.0, 1.25]).__next__)
    >>> w("start", {"generation": 2}) or w("stop", {"generation": 2, "collected": 0})
    >>> w.slow, w.longest_ms
    (1, 250.0)
    """

    warn_ms: float = 20.0
    clock: Callable[[], float] = time.perf_counter
    slow: int = 0
    longest_ms: float = 0.0
    _started: float = field(default=0.0, repr=False)

    def __call__(self, phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            self._started = self.clock()
            return
        ms = (self.clock() - self._started) * 1000.0
        self.longest_ms = max(self.longest_ms, ms)
        if ms >= self.warn_ms:
            self.slow += 1
            log.warning("gc generation %s paused %.1f ms (%s collected)", info["generation"], ms, info["collected"])


def install(warn_ms: float = 20.0) -> GcWatch:
    """Register a :class:`GcWatch` with the collector (once per process) and return it."""
    for cb in gc.callbacks:
        if isinstance(cb, GcWatch):
            return cb
    watch = GcWatch(warn_ms=warn_ms)
    gc.callbacks.append(watch)
    return watch
