"""Session vectors kept while the user's state is unchanged, and the serving funnel's embedder reusing them."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from agents.serving_setup import session_embedder
from state.feature_config import EventView, FeatureConfig
from state.features import apply_events
from state.registry import FileRegistry
from state.session_vectors import SessionVectors
from state.user_state import UserState, new_user_state


def _state(user_id: str, items: list[str]) -> UserState:
    state = new_user_state(user_id)
    events = [
        EventView(f"{user_id}-{k}", "view", user_id, item, 1_700_000_000.0 + k, "s", 10.0, "c")
        for k, item in enumerate(items)
    ]
    apply_events(state, events, FeatureConfig())
    return state


def test_a_kept_vector_is_valid_for_its_version_and_state_only() -> None:
    cache = SessionVectors(capacity=10)
    state = _state("u1", ["a", "b"])
    cache.put("v1", state, np.ones(4, np.float32))
    assert cache.get("v1", state) is not None and cache.get("v2", state) is None
    assert cache.get("v1", _state("u2", ["a", "b"])) is None  # another user
    apply_events(state, [EventView("u1-9", "click", "u1", "c", 1_700_000_100.0, "s", 10.0, "c")], FeatureConfig())
    assert cache.get("v1", state) is None  # an event applied since


def test_the_oldest_entries_go_first_and_capacity_zero_keeps_nothing() -> None:
    cache = SessionVectors(capacity=2)
    states = {u: _state(u, ["a"]) for u in ("u1", "u2", "u3")}
    cache.put_many("v1", states, {u: np.full(2, n, np.float32) for n, u in enumerate(states)})
    assert len(cache) == 2 and cache.get("v1", states["u1"]) is None
    cache.put("v1", states["u2"], np.zeros(2, np.float32))  # refreshed: now the newest
    cache.put("v1", states["u1"], np.zeros(2, np.float32))
    assert cache.get("v1", states["u3"]) is None and cache.get("v1", states["u2"]) is not None
    empty = SessionVectors(capacity=0)
    empty.put("v1", states["u1"], np.zeros(2, np.float32))
    assert len(empty) == 0
    with pytest.raises(ValueError, match="capacity"):
        SessionVectors(capacity=-1)


def test_the_embedder_reuses_a_kept_vector_and_answers_as_without_it(tiny_registry: FileRegistry) -> None:
    loaded = tiny_registry.load("v0001")
    items = list(loaded.item_ids[:3])
    runs: list[int] = []
    real = loaded.sessions["user_tower"]

    class Counting:
        def run(self, *args: Any, **kwargs: Any) -> Any:
            runs.append(1)
            return real.run(*args, **kwargs)

    loaded.sessions["user_tower"] = Counting()
    cache = SessionVectors()
    plain, cached = session_embedder(loaded), session_embedder(loaded, cache)
    assert plain is not None and cached is not None
    state = _state("u1", items)
    want = plain(state)
    assert want is not None and len(runs) == 1
    first, again = cached(state), cached(state)
    assert len(runs) == 2  # the second request found the vector kept by the first
    assert first is not None and again is not None
    assert np.array_equal(first, want) and np.array_equal(again, want)
    apply_events(state, [EventView("u1-9", "click", "u1", items[0], 1_700_000_100.0, "s", 10.0, "c")], FeatureConfig())
    changed = cached(state)
    assert len(runs) == 3 and changed is not None and np.array_equal(changed, plain(state))
