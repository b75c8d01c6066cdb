"""Session vectors kept in the worker's memory while the user's state is unchanged.

The events agent embeds every user of a batch with the served version's user tower (and stores the vectors
in Redis). The serving funnel embeds the same state again for each request, with the same tower: the
vector is a function of the state, so both keep it here and the funnel reuses it, without the store's
round trip and without running the tower again.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import numpy.typing as npt

from state.user_state import UserState

F32 = npt.NDArray[np.float32]
StateKey = tuple[int, tuple[int, int, str] | None]


def state_key(state: UserState) -> StateKey:
    """What changes whenever an event is applied to ``state``: its event count and newest interaction.

    >>> from state.user_state import new_user_state
    >>> state = new_user_state("u")
    >>> state_key(state)
    (0, None)
    >>> state.total, state.last_n = 3, [(1, 0, "a"), (2, 1, "b")]
    >>> state_key(state)
    (3, (2, 1, 'b'))
    """
    return (state.total, state.last_n[-1] if state.last_n else None)


class SessionVectors:
    """The latest session vector of up to ``capacity`` users, each valid for one model version and one
    :func:`state_key` of the user's state; the oldest entry goes first when full (0: keeps nothing).

    >>> from state.user_state import new_user_state
    >>> cache, state = SessionVectors(capacity=2), new_user_state("u")
    >>> cache.put("v1", state, np.ones(2, np.float32))
    >>> cache.get("v1", state).tolist(), cache.get("v2", state)
    ([1.0, 1.0], None)
    >>> state.total += 1  # an event applied: the vector no longer describes the state
    >>> cache.get("v1", state) is None
    True
    """

    def __init__(self, capacity: int = 100_000) -> None:
        if capacity < 0:
            raise ValueError(f"capacity must be >= 0, got {capacity}")
        self.capacity = capacity
        self._data: dict[str, tuple[str, StateKey, F32]] = {}

    def __len__(self) -> int:
        return len(self._data)

    def get(self, version: str, state: UserState) -> F32 | None:
        """The vector kept for ``state`` by ``version``, or None (not kept, another version, state changed)."""
        hit = self._data.get(state.user_id)
        if hit is None or hit[0] != version or hit[1] != state_key(state):
            return None
        return hit[2]

    def put(self, version: str, state: UserState, vector: F32) -> None:
        """Keep ``vector`` as ``version``'s session vector of ``state`` as it is now."""
        if self.capacity == 0:
            return
        self._data.pop(state.user_id, None)  # re-inserted last: the oldest entries are evicted first
        while len(self._data) >= self.capacity:
            del self._data[next(iter(self._data))]
        self._data[state.user_id] = (version, state_key(state), vector)

    def put_many(self, version: str, states: Mapping[str, UserState], vectors: Mapping[str, F32]) -> None:
        """Keep the vectors of a batch: ``vectors`` by user id, for the states in ``states``."""
        for user_id, vector in vectors.items():
            state = states.get(user_id)
            if state is not None:
                self.put(version, state, vector)
