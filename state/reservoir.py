"""A bounded uniform sample of fixed-width rows (reservoir sampling, Algorithm R) with an injected generator."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

F32 = npt.NDArray[np.float32]


class Reservoir:
    """Keeps a uniform sample of at most ``capacity`` of the rows added since the last ``reset``.

    Memory is ``capacity x width`` float32 whatever the traffic; each row added after the reservoir is full
    replaces a random slot with probability ``capacity / rows_seen``, so every row seen is equally likely to
    be in the sample (Vitter's Algorithm R, vectorised over a batch).

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
        self.capacity, self.width, self.rng = capacity, width, rng
        self._rows = np.zeros((capacity, width), np.float32)
        self.seen = 0

    def add(self, rows: npt.ArrayLike) -> None:
        """Offer ``rows`` ``[n, width]``; keeps none of them by reference."""
        x = np.asarray(rows, np.float32).reshape(-1, self.width)
        n = x.shape[0]
        if n == 0:
            return
        t = self.seen + np.arange(n)  # the 0-based position of each row in the stream
        fill = t < self.capacity
        self._rows[t[fill]] = x[fill]
        rest = ~fill
        if rest.any():
            # row t replaces slot j ~ U{0..t} when j < capacity; a later row of the batch wins a shared slot
            j = (self.rng.random(int(rest.sum())) * (t[rest] + 1)).astype(np.int64)
            keep = j < self.capacity
            self._rows[j[keep]] = x[rest][keep]
        self.seen += n

    def sample(self) -> F32:
        """A copy of the rows kept, ``[min(seen, capacity), width]``."""
        return self._rows[: min(self.seen, self.capacity)].copy()

    def reset(self) -> None:
        """Start a new window: forget every row."""
        self.seen = 0
