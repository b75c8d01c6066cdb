"""Re-index a published version over a larger catalog: item-tower embeddings in batch, an IVF index, a new version.

Items the version was trained on keep their index position and vector (so the user tower's item sequences
stay valid); every other item is embedded from content alone (``item_idx = -1``), exactly as the exported
item tower embeds a new item.
"""

from __future__ import annotations

import json
import math
import shutil
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from models.data import N_AGE_BUCKETS, N_PRICE_BUCKETS
from models.errors import ModelError
from models.spec import FeatureSpec

#: ``data_window`` key of a re-indexed version: how many leading item ids the user tower was trained on.
TOWER_ITEMS = "tower_items"
F32 = npt.NDArray[np.float32]
F64 = npt.NDArray[np.float64]
I64 = npt.NDArray[np.int64]


def price_buckets(price: F64) -> I64:
    """Vectorised ``models.data.price_bucket``.

    >>> price_buckets(np.array([np.nan, 0.0, 0.5, 1.0, 3.0, 1e12])).tolist()
    [0, 1, 1, 2, 3, 15]
    """
    ok = np.isfinite(price) & (price >= 0)
    b = 1 + np.minimum(N_PRICE_BUCKETS - 2, np.floor(np.log2(1.0 + np.where(ok, price, 0.0))))
    return np.where(ok, b, 0).astype(np.int64)


def age_buckets(age_days: F64) -> I64:
    """Vectorised ``models.data.age_bucket``.

    >>> age_buckets(np.array([np.nan, -5.0, 0.0, 1.0, 30.0, 1e9])).tolist()
    [0, 1, 1, 2, 5, 19]
    """
    ok = np.isfinite(age_days)
    b = 1 + np.minimum(N_AGE_BUCKETS - 2, np.floor(np.log2(1.0 + np.maximum(np.where(ok, age_days, 0.0), 0.0))))
    return np.where(ok, b, 0).astype(np.int64)


@dataclass(frozen=True)
class ItemContent:
    """What the item tower reads, per item: known training index (-1: new), category, brand, price, age."""

    item_idx: I64
    category: Sequence[str]
    brand: Sequence[str]
    price: F64
    age_days: F64


def tower_inputs(spec: FeatureSpec, content: ItemContent, brands: Sequence[str]) -> dict[str, Any]:
    """The ``item_tower`` feeds for ``content``; ``brands`` is the training brand list (code = index + 1).

    Categories the version never saw go to its ``unknown`` column, brands to code 0, as in training.
    """
    graph = spec.graphs.get("item_tower")
    if graph is None:
        raise ModelError("the version has no item_tower graph to embed new items with")
    columns = next(t.columns for t in graph.inputs if t.name == "item_category") or []
    col = {name: j for j, name in enumerate(columns)}
    unknown = col.get("unknown", 0)
    cat_idx = np.fromiter((col.get(c, unknown) for c in content.category), np.int64, len(content.category))
    onehot = np.zeros((cat_idx.shape[0], len(columns)), np.float32)
    onehot[np.arange(cat_idx.shape[0]), cat_idx] = 1.0
    code = {b: j + 1 for j, b in enumerate(brands)}
    return {
        "item_idx": np.ascontiguousarray(content.item_idx, np.int64),
        "item_category": onehot,
        "item_brand": np.fromiter((code.get(b, 0) for b in content.brand), np.int64, len(content.brand)),
        "item_price_bucket": price_buckets(content.price),
        "item_age_bucket": age_buckets(content.age_days),
    }


def embed(session: Any, feeds: dict[str, Any], batch: int = 65_536) -> F32:
    """Run the item tower over every row of ``feeds`` in batches of ``batch``."""
    n = int(feeds["item_idx"].shape[0])
    parts = []
    for lo in range(0, n, batch):
        (out,) = session.run(["item_embedding"], {k: v[lo : lo + batch] for k, v in feeds.items()})
        parts.append(np.asarray(out, np.float32))
    return np.concatenate(parts) if parts else np.zeros((0, 0), np.float32)


@dataclass(frozen=True)
class Reindexed:
    """A new version's name and what building it took."""

    version: str
    items: int
    embed_seconds: float
    index_seconds: float
    nlist: int
    nprobe: int
    recall: float  # recall@k of the IVF search against exact search, on session-like queries
    recall_k: int


def reindex_version(
    registry_dir: Path,
    base: str,
    new_ids: Sequence[str],
    content: ItemContent,
    brands: Sequence[str],
    *,
    nprobe: int = 32,
    threads: int = 2,
    recall_k: int = 500,
) -> Reindexed:
    """Publish and promote a copy of ``base`` whose index covers its items plus ``new_ids`` (content ``content``).

    The base items keep their index position and exact vector (so user-tower sequences and scores stay as
    trained); the new ones are embedded by the item tower from content alone. ``nlist`` is about
    ``4 sqrt(n)`` cells; ``nprobe`` is stored in the index and is what workers search with.
    """
    import faiss

    from state.ann import IvfIndex
    from state.registry import FileRegistry

    reg = FileRegistry(registry_dir)
    loaded = reg.load(base)
    stored = loaded.index.stored() if loaded.index is not None and hasattr(loaded.index, "stored") else None
    if stored is None or loaded.spec.index_file is None or loaded.spec.item_ids_file is None:
        raise ModelError(f"version {base} has no index whose vectors can be read back")
    started = time.perf_counter()
    known = np.empty((len(loaded.item_ids), stored[1].shape[1]), np.float32)
    known[stored[0]] = stored[1]
    vectors = np.vstack([known, embed(loaded.sessions["item_tower"], tower_inputs(loaded.spec, content, brands))])
    ids = [*loaded.item_ids, *new_ids]
    embedded = time.perf_counter()
    nlist = max(1, int(4 * math.sqrt(len(ids))))
    faiss.omp_set_num_threads(threads)
    index = IvfIndex(int(vectors.shape[1]), nlist=nlist, nprobe=nprobe)
    index.add(np.arange(len(ids), dtype=np.int64), vectors)
    faiss.omp_set_num_threads(1)
    indexed = time.perf_counter()
    recall = ivf_recall(index, vectors, k=recall_k)
    tower_items = int(loaded.manifest.data_window.get(TOWER_ITEMS, len(loaded.item_ids)))
    new = _publish(
        reg, base, index, ids, params={"kind": "ivf", "nlist": nlist, "nprobe": nprobe}, tower_items=tower_items
    )
    return Reindexed(
        new, len(ids), round(embedded - started, 2), round(indexed - embedded, 2), nlist, nprobe, recall, recall_k
    )


def _publish(reg: Any, base: str, index: Any, ids: Sequence[str], *, params: dict[str, Any], tower_items: int) -> str:
    manifest, spec = reg.verify(base)
    with tempfile.TemporaryDirectory() as tmp:
        staging = Path(tmp)
        for name in manifest.files:
            shutil.copy2(reg.root / "versions" / base / name, staging / name)
        index.save(staging / spec.index_file)
        (staging / spec.item_ids_file).write_text(json.dumps(list(ids)), encoding="utf-8")
        window = {**manifest.data_window, "catalog_items": len(ids), "reindexed_from": base, TOWER_ITEMS: tower_items}
        new = reg.publish(
            staging,
            split=manifest.split,
            metrics=dict(manifest.metrics),
            data_window=window,
            config={**manifest.config, "index": params},
        )
    reg.promote(new.version, force=True)
    return str(new.version)


def ivf_recall(index: Any, vectors: F32, *, k: int, n_queries: int = 50, seed: int = 0) -> float:
    """Recall@k of ``index`` against exact inner-product search, for queries that look like session vectors
    (the mean of five random items plus noise)."""
    from state.ann import recall_at_k

    rng = np.random.default_rng(seed)
    picks = rng.integers(0, vectors.shape[0], (n_queries, 5))
    queries = vectors[picks].mean(axis=1) + rng.normal(0, 0.05, (n_queries, vectors.shape[1])).astype(np.float32)
    queries = np.ascontiguousarray(queries, dtype=np.float32)
    exact = np.vstack([np.argpartition(-(q @ vectors.T), k, axis=1)[:, :k] for q in np.array_split(queries, 10)])
    approx, _ = index.search(queries, k)
    return round(recall_at_k(approx, exact), 4)
