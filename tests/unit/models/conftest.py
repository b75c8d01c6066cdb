"""Fixtures of the model tests: tiny datasets built in memory or in tmp_path."""

from __future__ import annotations

from pathlib import Path

import pytest
from models_fixtures import cyclic_dataset

from models.data import Dataset


@pytest.fixture
def cyclic() -> Dataset:
    return cyclic_dataset()


@pytest.fixture
def sim_dir(tmp_path: Path) -> Path:
    from models.synthetic import generate, write_jsonl

    world = generate(3, n_users=50, n_items=40, requests_per_user=10)
    write_jsonl(world, tmp_path / "events.jsonl", tmp_path / "catalog.jsonl")
    return tmp_path
