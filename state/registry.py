"""Versioned model registry on the filesystem: publish, verify, load for serving, and guarded promotion."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from models.drift import DriftReference
from models.errors import RegistryError
from models.spec import FeatureSpec, OnnxSpec
from state.ann import AnnIndex, load_index

MANIFEST = "manifest.json"
SPEC_FILE = "feature_spec.json"
CHAMPION = "CHAMPION"
DRIFT_FILE = "drift_reference.json"
"""Optional file of a staging directory: the training window's :class:`DriftReference`, kept in the manifest."""


class FileEntry(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")
    sha256: str
    bytes: int


class Manifest(BaseModel):
    """``manifest.json`` of one version: what it contains and how it was produced."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    schema_version: int = 1
    version: str
    created_at: datetime
    code_version: str
    split: str = Field(description="dataset/protocol the metrics were measured on, e.g. ml-100k/leave-last-out")
    primary_metric: str = "ndcg@10"
    metrics: dict[str, float]
    data_window: dict[str, Any]
    config: dict[str, Any] = Field(default_factory=dict)
    files: dict[str, FileEntry]
    drift: DriftReference | None = Field(default=None, description="training-window histograms; older versions lack it")


@dataclass(frozen=True)
class LoadedVersion:
    """A fully verified version, ready to serve: open ONNX sessions, the item index and its id list."""

    manifest: Manifest
    spec: FeatureSpec
    sessions: dict[str, Any]  # role -> onnxruntime.InferenceSession
    index: AnnIndex | None
    item_ids: tuple[str, ...]


class ModelRegistry(Protocol):
    """Where trained versions live; a version never changes after ``publish``."""

    def publish(
        self,
        staging: Path,
        *,
        split: str,
        metrics: dict[str, float],
        data_window: dict[str, Any],
        config: dict[str, Any] | None = None,
        primary_metric: str = "ndcg@10",
    ) -> Manifest:
        """Copy ``staging`` (which holds ``feature_spec.json`` and every file it names) into a new version.

        A ``drift_reference.json`` in ``staging`` becomes the manifest's ``drift`` field.
        """
        ...

    def list(self) -> list[Manifest]:
        """Every version, oldest first."""
        ...

    def get(self, version: str) -> Manifest:
        """The manifest of ``version`` without verifying its files."""
        ...

    def load(self, version: str) -> LoadedVersion:
        """Verify hashes and ONNX signatures, then open everything; raises instead of returning part of it."""
        ...

    def champion(self) -> str | None:
        """The version serving should use, or ``None`` before the first promotion."""
        ...

    def promote(self, version: str, force: bool = False) -> None:
        """Make ``version`` champion; refuses a lower primary metric on the same split unless ``force``."""
        ...

    def retire(self, version: str) -> None:
        """Stop ``version`` being champion (serving continues without a model); refuses any other version."""
        ...


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def git_sha(repo: Path) -> str:
    """The commit of ``repo`` (with ``+dirty`` when the tree has changes), or ``unknown``."""
    try:
        sha = subprocess.run(
            ["git", "rev-parse", "HEAD"],  # noqa: S607 - git from PATH, like any developer tool
            cwd=repo,
            capture_output=True,
            text=True,
            check=True,
            timeout=5,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain"],  # noqa: S607
            cwd=repo,
            capture_output=True,
            text=True,
            check=True,
            timeout=5,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return sha + ("+dirty" if dirty else "")


def _read_spec(path: Path) -> FeatureSpec:
    try:
        return FeatureSpec.model_validate_json(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise RegistryError(f"{path}: feature spec missing") from None
    except ValidationError as exc:
        raise RegistryError(f"{path}: invalid feature spec: {exc.errors()[0]['msg']}") from None


def spec_files(spec: FeatureSpec) -> list[str]:
    names = [g.file for g in spec.graphs.values()]
    names += [f for f in (spec.index_file, spec.item_ids_file) if f]
    return [SPEC_FILE, *names]


def open_onnx(path: Path) -> Any:
    """An onnxruntime CPU session with one thread (a serving worker is one core; threads add jitter)."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    opts.inter_op_num_threads = 1
    try:
        return ort.InferenceSession(str(path), sess_options=opts, providers=["CPUExecutionProvider"])
    except Exception as exc:  # onnxruntime raises its own untyped errors
        raise RegistryError(f"{path}: not a loadable ONNX model: {str(exc)[:200]}") from exc


def check_onnx_signature(session: Any, graph: OnnxSpec, path: Path) -> None:
    """Raise :class:`RegistryError` unless the session's inputs and outputs match the spec exactly, in order."""
    dtypes = {"tensor(float)": "float32", "tensor(int64)": "int64"}
    for kind, actual, expected in (
        ("input", session.get_inputs(), graph.inputs),
        ("output", session.get_outputs(), graph.outputs),
    ):
        got = [a.name for a in actual]
        want = [e.name for e in expected]
        if got != want:
            raise RegistryError(f"{path}: ONNX {kind} names {got} do not match the feature spec {want}")
        for a, e in zip(actual, expected, strict=True):
            shape = [d if isinstance(d, int) else None for d in a.shape]
            if shape != e.shape or dtypes.get(a.type) != e.dtype:
                raise RegistryError(
                    f"{path}: ONNX {kind} {a.name!r} is {dtypes.get(a.type, a.type)}{shape}, "
                    f"feature spec says {e.dtype}{e.shape}"
                )


class FileRegistry:
    """``root/versions/<vNNNN>/`` directories with a ``manifest.json``; ``root/CHAMPION`` names the champion."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    @property
    def _versions(self) -> Path:
        return self.root / "versions"

    def publish(
        self,
        staging: Path,
        *,
        split: str,
        metrics: dict[str, float],
        data_window: dict[str, Any],
        config: dict[str, Any] | None = None,
        primary_metric: str = "ndcg@10",
    ) -> Manifest:
        staging = Path(staging)
        spec = _read_spec(staging / SPEC_FILE)
        if primary_metric not in metrics:
            raise RegistryError(f"publish: primary metric {primary_metric!r} missing from metrics {sorted(metrics)}")
        files: dict[str, FileEntry] = {}
        for name in spec_files(spec):
            src = staging / name
            if not src.is_file():
                raise RegistryError(f"{src}: named by the feature spec but missing from the staging directory")
            files[name] = FileEntry(sha256=sha256_file(src), bytes=src.stat().st_size)
        self._versions.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=".publish-", dir=self._versions))
        for name in files:
            shutil.copy2(staging / name, tmp / name)
        version = self._claim(tmp)
        manifest = Manifest(
            version=version,
            created_at=datetime.now(UTC),
            code_version=git_sha(Path.cwd()),
            split=split,
            primary_metric=primary_metric,
            metrics=metrics,
            data_window=data_window,
            config=config or {},
            files=files,
            drift=_read_drift(staging / DRIFT_FILE),
        )
        _atomic_write(self._versions / version / MANIFEST, manifest.model_dump_json(indent=2))
        return manifest

    def _claim(self, tmp: Path) -> str:
        # rename is atomic; a concurrent publisher that took the same number makes us try the next one
        n = len([p for p in self._versions.iterdir() if p.name.startswith("v")]) + 1
        while True:
            version = f"v{n:04d}"
            try:
                os.rename(tmp, self._versions / version)
                (self._versions / version).chmod(0o755)  # mkdtemp made it private; serving may run as another user
                return version
            except OSError:
                n += 1

    def list(self) -> list[Manifest]:
        if not self._versions.is_dir():
            return []
        names = sorted(p.name for p in self._versions.iterdir() if p.name.startswith("v"))
        return [self.get(v) for v in names]

    def get(self, version: str) -> Manifest:
        path = self._versions / version / MANIFEST
        if not path.is_file():
            known = [p.name for p in self._versions.iterdir()] if self._versions.is_dir() else []
            raise RegistryError(f"{path}: no such version {version!r} (known: {sorted(known)})")
        try:
            return Manifest.model_validate_json(path.read_text(encoding="utf-8"))
        except ValidationError as exc:
            raise RegistryError(f"{path}: corrupt manifest: {exc.errors()[0]['msg']}") from None

    def verify(self, version: str) -> tuple[Manifest, FeatureSpec]:
        """Check that every manifest file exists with the recorded size and sha256."""
        manifest = self.get(version)
        vdir = self._versions / version
        for name, entry in manifest.files.items():
            path = vdir / name
            if not path.is_file():
                raise RegistryError(f"{path}: file listed in the manifest is missing")
            if path.stat().st_size != entry.bytes or sha256_file(path) != entry.sha256:
                raise RegistryError(f"{path}: content hash does not match the manifest (corrupt or modified)")
        spec = _read_spec(vdir / SPEC_FILE)
        missing = set(spec_files(spec)) - set(manifest.files)
        if missing:
            raise RegistryError(f"{vdir / MANIFEST}: files {sorted(missing)} of the feature spec are not hashed")
        return manifest, spec

    def load(self, version: str) -> LoadedVersion:

        manifest, spec = self.verify(version)
        vdir = self._versions / version
        sessions: dict[str, Any] = {}
        for role, graph in spec.graphs.items():
            path = vdir / graph.file
            sess = open_onnx(path)
            check_onnx_signature(sess, graph, path)
            sessions[role] = sess
        index = load_index(vdir / spec.index_file) if spec.index_file else None
        item_ids: tuple[str, ...] = ()
        if spec.item_ids_file:
            item_ids = _read_ids(vdir / spec.item_ids_file)
        if index is not None and len(index) != len(item_ids):
            raise RegistryError(f"{vdir / str(spec.index_file)}: {len(index)} vectors but {len(item_ids)} item ids")
        return LoadedVersion(manifest, spec, sessions, index, item_ids)

    def champion(self) -> str | None:
        path = self.root / CHAMPION
        if not path.is_file():
            return None
        return path.read_text(encoding="utf-8").strip() or None

    def promote(self, version: str, force: bool = False) -> None:
        challenger, _ = self.verify(version)
        current = self.champion()
        if current is not None and current != version and not force:
            champ = self.get(current)
            if champ.split != challenger.split:
                raise RegistryError(
                    f"promote {version}: measured on {challenger.split!r} but champion {current} "
                    f"on {champ.split!r}; not comparable (use force)"
                )
            key = champ.primary_metric
            new, old = challenger.metrics.get(key), champ.metrics.get(key)
            if new is None or old is None or new < old:
                raise RegistryError(
                    f"promote {version}: {key} {new} is below champion {current}'s {old} "
                    f"on {champ.split} (use force to override)"
                )
        _atomic_write(self.root / CHAMPION, version + "\n")

    def retire(self, version: str) -> None:
        current = self.champion()
        if current != version:
            raise RegistryError(f"retire {version}: it is not the champion (the champion is {current})")
        (self.root / CHAMPION).unlink(missing_ok=True)


def warm_up(loaded: LoadedVersion) -> None:
    """Run every graph once on a default-shaped batch, so the first real request pays no lazy init."""
    for role, session in loaded.sessions.items():
        graph = loaded.spec.graphs[role]
        feeds = {}
        for t in graph.inputs:
            shape = [2 if d is None else int(d) for d in t.shape]
            dtype = np.int64 if t.dtype == "int64" else np.float32
            feeds[t.name] = np.full(shape, -1 if dtype is np.int64 else 0, dtype=dtype)
        session.run(None, feeds)


def _read_drift(path: Path) -> DriftReference | None:
    if not path.is_file():
        return None
    try:
        return DriftReference.model_validate_json(path.read_text(encoding="utf-8"))
    except ValidationError as exc:
        raise RegistryError(f"{path}: invalid drift reference: {exc.errors()[0]['msg']}") from None


def _read_ids(path: Path) -> tuple[str, ...]:
    try:
        ids = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise RegistryError(f"{path}: unreadable item id list: {exc}") from exc
    if not isinstance(ids, list) or not all(isinstance(i, str) for i in ids):
        raise RegistryError(f"{path}: item id list must be a JSON array of strings")
    return tuple(ids)


def _atomic_write(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(path)
