"""Injected clocks: the system clock for production, a settable fake for tests."""

from __future__ import annotations

import time
from typing import Protocol


class Clock(Protocol):
    """A source of wall-clock time in seconds since the epoch (UTC)."""

    def now(self) -> float:
        """Return the current time in epoch seconds; must never block."""
        ...


class SystemClock:
    """Wall-clock time from the operating system."""

    def now(self) -> float:
        return time.time()


class FakeClock:
    """A clock that only moves when told to.

    >>> c = FakeClock(100.0)
    >>> c.advance(2.5)
    >>> c.now()
    102.5
    """

    def __init__(self, start: float = 1_700_000_000.0) -> None:
        self._t = start

    def now(self) -> float:
        return self._t

    def advance(self, seconds: float) -> None:
        self._t += seconds

    def set(self, t: float) -> None:
        self._t = t
