"""Model registry: publish, verified load for serving, failures on bad files, guarded promotion."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from models.errors import RegistryError
from models.pipeline import build_version
from state.registry import FileRegistry

ML = "sim/leave-last-out"


@pytest.fixture(scope="module")
def staging(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from models.synthetic import generate, write_jsonl

    data = tmp_path_factory.mktemp("sim")
    write_jsonl(generate(5, n_users=40, n_items=30, requests_per_user=8), data / "events.jsonl", data / "catalog.jsonl")
    out = tmp_path_factory.mktemp("staging")
    build_version("sim", data, out, config="tiny")
    return out


def publish(reg: FileRegistry, staging: Path, ndcg: float, split: str = ML) -> str:
    return reg.publish(staging, split=split, metrics={"ndcg@10": ndcg}, data_window={"rows": 1}).version


def test_publish_list_get_and_load_for_serving(staging: Path, tmp_path: Path) -> None:
    reg = FileRegistry(tmp_path / "reg")
    v = publish(reg, staging, 0.1)
    assert v == "v0001" and [m.version for m in reg.list()] == ["v0001"]
    m = reg.get(v)
    assert set(m.files) >= {"feature_spec.json", "user_tower.onnx", "item_tower.onnx", "ranker.onnx", "items.faiss"}
    assert all(len(e.sha256) == 64 for e in m.files.values())
    loaded = reg.load(v)
    assert set(loaded.sessions) == {"user_tower", "item_tower", "ranker"}
    assert loaded.index is not None and len(loaded.index) == len(loaded.item_ids)
    spec = loaded.spec.graphs["user_tower"]
    seq_len, n_feats = int(spec.inputs[0].shape[1] or 0), int(spec.inputs[1].shape[1] or 0)
    seq = np.full((3, seq_len), -1, dtype=np.int64)
    seq[:, -1] = 0
    feats = np.zeros((3, n_feats), dtype=np.float32)
    (emb,) = loaded.sessions["user_tower"].run(None, {"item_seq": seq, "user_features": feats})
    ids, _ = loaded.index.search(emb, 5)
    assert ids.shape == (3, 5) and np.all(ids >= 0)


def test_tampered_file_fails_hash_check(staging: Path, tmp_path: Path) -> None:
    reg = FileRegistry(tmp_path / "reg")
    v = publish(reg, staging, 0.1)
    path = tmp_path / "reg" / "versions" / v / "ranker.onnx"
    path.write_bytes(path.read_bytes()[:-3] + b"xyz")
    with pytest.raises(RegistryError, match=r"ranker\.onnx: content hash does not match"):
        reg.load(v)


def test_missing_file_fails(staging: Path, tmp_path: Path) -> None:
    reg = FileRegistry(tmp_path / "reg")
    v = publish(reg, staging, 0.1)
    (tmp_path / "reg" / "versions" / v / "items.faiss").unlink()
    with pytest.raises(RegistryError, match=r"items\.faiss: file listed in the manifest is missing"):
        reg.load(v)


def test_corrupt_manifest_and_unknown_version(staging: Path, tmp_path: Path) -> None:
    reg = FileRegistry(tmp_path / "reg")
    v = publish(reg, staging, 0.1)
    (tmp_path / "reg" / "versions" / v / "manifest.json").write_text("{not json")
    with pytest.raises(RegistryError, match="corrupt manifest"):
        reg.load(v)
    with pytest.raises(RegistryError, match="no such version 'v0099'"):
        reg.get("v0099")


def test_onnx_inputs_that_do_not_match_the_spec_fail(staging: Path, tmp_path: Path) -> None:
    bad = tmp_path / "bad"
    shutil.copytree(staging, bad)
    spec = json.loads((bad / "feature_spec.json").read_text())
    spec["graphs"]["ranker"]["inputs"][0]["shape"] = [None, 3]
    (bad / "feature_spec.json").write_text(json.dumps(spec))
    reg = FileRegistry(tmp_path / "reg")
    v = publish(reg, bad, 0.1)
    with pytest.raises(
        RegistryError,
        match=r"ranker\.onnx: ONNX input 'features' is float32\[None, \d+\], "
        r"feature spec says float32\[None, 3\]",
    ):
        reg.load(v)
    spec["graphs"]["ranker"]["inputs"][0]["name"] = "x"
    (bad / "feature_spec.json").write_text(json.dumps(spec))
    v2 = publish(reg, bad, 0.1)
    with pytest.raises(RegistryError, match=r"input names \['features'\] do not match the feature spec \['x'\]"):
        reg.load(v2)


def test_garbage_onnx_fails_without_half_loading(staging: Path, tmp_path: Path) -> None:
    bad = tmp_path / "bad"
    shutil.copytree(staging, bad)
    (bad / "ranker.onnx").write_bytes(b"\x00garbage")
    reg = FileRegistry(tmp_path / "reg")
    v = publish(reg, bad, 0.1)
    with pytest.raises(RegistryError, match=r"ranker\.onnx: not a loadable ONNX model"):
        reg.load(v)


def test_publish_refuses_incomplete_staging(staging: Path, tmp_path: Path) -> None:
    bad = tmp_path / "bad"
    shutil.copytree(staging, bad)
    (bad / "user_tower.onnx").unlink()
    with pytest.raises(RegistryError, match="missing from the staging directory"):
        publish(FileRegistry(tmp_path / "reg"), bad, 0.1)
    assert not (tmp_path / "reg" / "versions").exists() or not list((tmp_path / "reg" / "versions").glob("v*"))


def test_promotion_refuses_regression_unless_forced(staging: Path, tmp_path: Path) -> None:
    reg = FileRegistry(tmp_path / "reg")
    assert reg.champion() is None
    good, worse, other = publish(reg, staging, 0.12), publish(reg, staging, 0.10), publish(reg, staging, 0.5, "x/y")
    reg.promote(good)
    assert reg.champion() == good
    with pytest.raises(RegistryError, match=r"ndcg@10 0\.1 is below champion v0001's 0\.12"):
        reg.promote(worse)
    with pytest.raises(RegistryError, match="not comparable"):
        reg.promote(other)
    assert reg.champion() == good
    reg.promote(worse, force=True)
    assert reg.champion() == worse
    better = publish(reg, staging, 0.2)
    reg.promote(better)
    assert reg.champion() == better
