"""A bounded uniform sample of fixed-width rows (reservoir sampling, Algorithm L) with an injected generator."""

from __future__ import annotations

import math
import random

import numpy as np
import numpy.typing as npt

F32 = npt.NDArray[np.float32]


class Reservoir:
    """Keeps a uniform sample of at most ``capacity`` of the rows added since the last ``reset``.

    Memory is ``capacity x width`` float32 whatever the traffic. Once full, the rows to keep are chosen with
    Li's Algorithm L (geometric skips between replacements, each replacing a random slot), which draws the
    same uniform sample as Algorithm R but costs nothing for the rows it skips: ``wants(n)`` tells a caller
    whether the next ``n`` rows hold one to keep, so it can skip building them at all.

    >>> r = Reservoir(capacity=3, width=1, rng=np.random.default_rng(0))
    >>> r.add(np.array([[1.0], [2.0]]))
    >>> r.seen, r.sample().ravel().tolist()
    (2, [1.0, 2.0])
    >>> r.add(np.arange(3.0, 101.0).reshape(-1, 1))
    >>> r.seen, r.sample().shape
    (100, (3, 1))
    """

    def __init__(self, capacity: int, width: int, rng: np.random.Generator) -> None:
        if capacity < 1 or width < 0:
            raise ValueError(f"reservoir needs capacity >= 1 and width >= 0, got {capacity}, {width}")
        self.capacity, self.width = capacity, width
        # scalar draws on the hot path: the stdlib generator is ~20x cheaper per call than numpy's, seeded from it
        self._rand = random.Random(int(rng.integers(2**63)))
        self._rows = np.zeros((capacity, width), np.float32)
        self.seen: int = 0
        self._w: float = 1.0
        self._next: int = capacity - 1
        self.reset()

    def _schedule(self) -> None:
        """Algorithm L: shrink the acceptance weight, then skip a geometric number of rows."""
        u1, u2 = 1.0 - self._rand.random(), 1.0 - self._rand.random()  # in (0, 1]: logs stay finite
        self._w *= math.exp(math.log(u1) / self.capacity)
        self._next += math.floor(math.log(u2) / math.log1p(-self._w)) + 1 if self._w < 1.0 else 1

    def wants(self, n: int) -> bool:
        """Whether any of the next ``n`` rows would be kept (else ``skip(n)`` is all they need)."""
        return self.seen < self.capacity or self._next < self.seen + n

    def skip(self, n: int) -> None:
        """Count ``n`` rows that ``wants(n)`` said would not be kept."""
        self.seen += n

    def add(self, rows: npt.ArrayLike) -> None:
        """Offer ``rows`` ``[n, width]``; keeps none of them by reference."""
        x = np.asarray(rows, np.float32).reshape(-1, self.width)
        start, end = self.seen, self.seen + x.shape[0]
        fill = max(0, min(end, self.capacity) - start)
        if fill:
            self._rows[start : start + fill] = x[:fill]
        while self._next < end:  # _next >= capacity: replacements only once full
            self._rows[self._rand.randrange(self.capacity)] = x[self._next - start]
            self._schedule()
        self.seen = end

    def sample(self) -> F32:
        """A copy of the rows kept, ``[min(seen, capacity), width]``."""
        return self._rows[: min(self.seen, self.capacity)].copy()

    def reset(self) -> None:
        """Start a new window: forget every row."""
        self.seen = 0
        self._w, self._next = 1.0, self.capacity - 1
        self._schedule()
