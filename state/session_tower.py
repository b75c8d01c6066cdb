"""Session embeddings online: the registry's ONNX user tower over users' recent items, batched."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

from state.feature_config import IMPRESSION
from state.registry import LoadedVersion
from state.user_state import UserState
from streams.errors import ConfigError

F32 = npt.NDArray[np.float32]


class SessionTower:
    """Runs ``user_tower`` for many users at once; users with no known recent item get no vector.

    The sequence is the user's ``last_n`` minus impressions (oldest first, left-padded with -1), the
    same input the tower saw in training; user features the stream does not know take the spec's
    documented defaults.
    """

    def __init__(self, loaded: LoadedVersion) -> None:
        graph = loaded.spec.graphs.get("user_tower")
        if graph is None or "user_tower" not in loaded.sessions:
            raise ConfigError(f"model {loaded.manifest.version} has no user_tower graph")
        inputs = {t.name: t for t in graph.inputs}
        self.version = loaded.manifest.version
        self._session: Any = loaded.sessions["user_tower"]
        self.max_len = int(inputs["item_seq"].shape[1] or 50)
        defaults = inputs["user_features"].defaults or [0.0] * int(inputs["user_features"].shape[1] or 0)
        self._defaults = np.asarray(defaults, dtype=np.float32)
        # A version re-indexed over a larger catalog lists the trained items first; the tower knows only those.
        known = int(loaded.manifest.data_window.get("tower_items", len(loaded.item_ids)))
        self._index = {item: i for i, item in enumerate(loaded.item_ids[:known])}

    def sequences(self, states: Sequence[UserState]) -> tuple[npt.NDArray[np.int64], list[int]]:
        """The tower's ``item_seq`` rows for ``states`` and the positions of users with at least one item."""
        seq = np.full((len(states), self.max_len), -1, dtype=np.int64)
        rows: list[int] = []
        for b, state in enumerate(states):
            idx = [self._index[item] for _, t, item in state.last_n if t != IMPRESSION and item in self._index]
            idx = idx[-self.max_len :]
            if idx:
                seq[b, -len(idx) :] = idx
                rows.append(b)
        return seq, rows

    def embed(self, states: Sequence[UserState]) -> dict[str, F32]:
        """Session embedding per user id (only users with history the model knows)."""
        seq, rows = self.sequences(states)
        if not rows:
            return {}
        feats = np.tile(self._defaults, (len(rows), 1))
        (out,) = self._session.run(["user_embedding"], {"item_seq": seq[rows], "user_features": feats})
        vecs = np.asarray(out, dtype=np.float32)
        return {states[b].user_id: vecs[i] for i, b in enumerate(rows)}
