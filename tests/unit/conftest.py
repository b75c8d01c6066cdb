"""Unit-tier fixtures shared across modules: one tiny model registry built once per session."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from state.registry import FileRegistry


@pytest.fixture(scope="session")
def tiny_registry_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A registry with v0001 and v0002, the same untrained (random-weight) tiny version published twice."""
    from models.pipeline import build_version
    from models.synthetic import generate, write_jsonl

    data = tmp_path_factory.mktemp("sim")
    write_jsonl(generate(5, n_users=40, n_items=30, requests_per_user=8), data / "events.jsonl", data / "catalog.jsonl")
    staging = tmp_path_factory.mktemp("staging")
    build_version("sim", data, staging, config="untrained")
    root = tmp_path_factory.mktemp("registry")
    reg = FileRegistry(root)
    for ndcg in (0.1, 0.2):
        reg.publish(staging, split="sim/leave-last-out", metrics={"ndcg@10": ndcg}, data_window={"rows": 1})
    return root


@pytest.fixture
def tiny_registry(tiny_registry_template: Path, tmp_path: Path) -> FileRegistry:
    """A private copy of the tiny registry (tests may promote, retire and corrupt it)."""
    root = tmp_path / "registry"
    shutil.copytree(tiny_registry_template, root)
    return FileRegistry(root)
