"""Named training configurations (``default`` is what CI and ``make demo`` use; ``long`` trades time for quality)."""

from __future__ import annotations

from typing import Literal

from models.errors import ModelError
from models.ranker import RankerConfig
from models.two_tower import TwoTowerConfig

ConfigName = Literal["default", "long", "tiny", "untrained"]

TWO_TOWER: dict[str, TwoTowerConfig] = {
    # ~3.5 s per epoch on 2 CPU cores for ML-100K: 60 epochs stay under the 5-minute budget.
    "default": TwoTowerConfig(epochs=60),
    "long": TwoTowerConfig(epochs=200, max_len=100, window_stride=50),
    "tiny": TwoTowerConfig(dim=16, max_len=10, window_stride=10, n_layers=1, n_heads=1, epochs=3, batch_size=64),
    # Random weights in the tiny shape: a deliberately weak version (closed-loop runs, lifecycle tests).
    "untrained": TwoTowerConfig(dim=16, max_len=10, window_stride=10, n_layers=1, n_heads=1, epochs=0, batch_size=64),
}
RANKER: dict[str, RankerConfig] = {
    "default": RankerConfig(),
    "long": RankerConfig(epochs=60, n_experts=4),
    "tiny": RankerConfig(hidden=16, tower=8, epochs=3),
    "untrained": RankerConfig(hidden=16, tower=8, epochs=0),
}


def two_tower_config(name: str, seed: int = 0) -> TwoTowerConfig:
    """The named two-tower config with ``seed`` applied; an unknown name lists the valid ones."""
    if name not in TWO_TOWER:
        raise ModelError(f"unknown config {name!r}; valid: {sorted(TWO_TOWER)}")
    from dataclasses import replace

    return replace(TWO_TOWER[name], seed=seed)


def ranker_config(name: str, seed: int = 0) -> RankerConfig:
    if name not in RANKER:
        raise ModelError(f"unknown config {name!r}; valid: {sorted(RANKER)}")
    from dataclasses import replace

    return replace(RANKER[name], seed=seed)
