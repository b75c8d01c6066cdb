"""Latency and recall benchmarks of the serving artifacts: the HNSW item index and the ONNX ranker."""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from models.data import N_AGE_BUCKETS, N_PRICE_BUCKETS, FloatArray
from models.two_tower import ItemTower

Progress = Callable[[str, int, int], None]


def simulated_item_embeddings(n_items: int, dim: int, seed: int, n_categories: int = 200, n_brands: int = 2000
                              ) -> FloatArray:
    """Item-tower embeddings of a simulated catalog: a seeded item tower over random content and ids.

    The id part is scaled down to the size it has after id-dropout training, so items cluster by content
    the way trained item embeddings do.
    """
    gen = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    tower = ItemTower(0, n_categories, n_brands, dim)
    out = np.empty((n_items, dim), dtype=np.float32)
    with torch.no_grad():
        for start in range(0, n_items, 100_000):
            n = min(100_000, n_items - start)
            cat = torch.zeros(n, n_categories)
            cat[torch.arange(n), torch.randint(0, n_categories, (n,), generator=gen)] = 1.0
            brand = torch.randint(0, n_brands, (n,), generator=gen)
            price = torch.randint(1, N_PRICE_BUCKETS, (n,), generator=gen)
            age = torch.randint(1, N_AGE_BUCKETS, (n,), generator=gen)
            content = tower(torch.full((n,), -1), cat, brand, price, age)
            ids = torch.randn(n, dim, generator=gen) * 0.05
            out[start : start + n] = (content + ids).numpy()
    return out


def _queries(items: FloatArray, n: int, rng: np.random.Generator) -> FloatArray:
    # a user embedding looks like a blend of a few items the user liked plus noise
    picks = items[rng.integers(0, items.shape[0], (n, 5))]
    q = picks.mean(axis=1) + rng.normal(0, 0.05, (n, items.shape[1]))
    return np.ascontiguousarray(q, dtype=np.float32)


def _latencies_ms(fn: Callable[[FloatArray], object], queries: FloatArray) -> np.ndarray:
    out = np.empty(queries.shape[0])
    for i in range(queries.shape[0]):
        t = time.perf_counter()
        fn(queries[i : i + 1])
        out[i] = (time.perf_counter() - t) * 1000.0
    return out


def bench_ann(n_items: int, dim: int = 64, k: int = 200, n_queries: int = 1000, seed: int = 0,
              ef_grid: tuple[int, ...] = (200, 256, 320, 400, 512), m: int = 32, ef_construction: int = 80,
              build_threads: int = 2, progress: Progress | None = None) -> dict[str, Any]:
    """Recall@k of HNSW against exact search and one-thread latency per query; picks the smallest good ef."""
    import faiss

    from state.ann import ExactIndex, HnswIndex, recall_at_k

    say = progress or (lambda d, a, b: None)
    rng = np.random.default_rng(seed)
    say("embeddings", 0, 1)
    items = simulated_item_embeddings(n_items, dim, seed)
    queries = _queries(items, n_queries, rng)
    ids = np.arange(n_items, dtype=np.int64)
    faiss.omp_set_num_threads(build_threads)
    say("exact index", 0, 1)
    exact = ExactIndex(dim)
    exact.add(ids, items)
    truth, _ = exact.search(queries, k)
    say("hnsw build", 0, 1)
    started = time.perf_counter()
    hnsw = HnswIndex(dim, m=m, ef_construction=ef_construction)
    for start in range(0, n_items, 100_000):
        hnsw.add(ids[start : start + 100_000], items[start : start + 100_000])
        say("hnsw build", start + 100_000, n_items)
    build_s = time.perf_counter() - started
    faiss.omp_set_num_threads(1)
    sweep = []
    for ef in ef_grid:
        hnsw.ef_search = ef
        lat = _latencies_ms(lambda q: hnsw.search(q, k), queries)
        approx, _ = hnsw.search(queries, k)
        sweep.append({"ef_search": ef, "recall_at_200": recall_at_k(approx, truth),
                      "p50_ms": float(np.percentile(lat, 50)), "p99_ms": float(np.percentile(lat, 99))})
        say("ef sweep", len(sweep), len(ef_grid))
    good = [s for s in sweep if s["recall_at_200"] >= 0.95]
    chosen = good[0] if good else sweep[-1]
    exact_lat = _latencies_ms(lambda q: exact.search(q, k), queries[:50])
    return {"items": n_items, "dim": dim, "k": k, "queries": n_queries, "m": m, "ef_construction": ef_construction,
            "ef_search": chosen["ef_search"], "recall_at_200": chosen["recall_at_200"], "p50_ms": chosen["p50_ms"],
            "p99_ms": chosen["p99_ms"], "exact_p50_ms": float(np.percentile(exact_lat, 50)),
            "build_seconds": round(build_s, 1), "build_threads": build_threads, "search_threads": 1, "sweep": sweep}


def bench_ranker(onnx_path: Path | None = None, candidates: int = 1000, runs: int = 2000, seed: int = 0
                 ) -> dict[str, Any]:
    """p50/p99 of one onnxruntime call scoring ``candidates`` rows on one thread."""
    import onnxruntime as ort

    with tempfile.TemporaryDirectory() as tmp:
        path = onnx_path or _tiny_ranker_onnx(Path(tmp) / "ranker.onnx", seed)
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = 1
        opts.inter_op_num_threads = 1
        opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        sess = ort.InferenceSession(str(path), sess_options=opts, providers=["CPUExecutionProvider"])
        n_feat = sess.get_inputs()[0].shape[1]
        x = np.random.default_rng(seed).normal(size=(candidates, n_feat)).astype(np.float32)
        for _ in range(50):
            sess.run(None, {"features": x})
        lat = np.empty(runs)
        for i in range(runs):
            t = time.perf_counter()
            sess.run(None, {"features": x})
            lat[i] = (time.perf_counter() - t) * 1000.0
    return {"candidates": candidates, "p50_ms": float(np.percentile(lat, 50)),
            "p99_ms": float(np.percentile(lat, 99)), "runs": runs, "threads": 1,
            "model": str(onnx_path) if onnx_path else "default-architecture ranker trained on a synthetic log"}


def _tiny_ranker_onnx(path: Path, seed: int) -> Path:
    from models.configs import ranker_config
    from models.export import export_ranker
    from models.ranker import train_ranker
    from models.ranker_features import build_ranker_data
    from models.simlog import load_simulator
    from models.synthetic import generate, write_jsonl

    world = generate(seed)
    write_jsonl(world, path.parent / "events.jsonl", path.parent / "catalog.jsonl")
    log = load_simulator(path.parent / "events.jsonl", path.parent / "catalog.jsonl")
    trained = train_ranker(build_ranker_data(log), ranker_config("default", seed))
    export_ranker(trained.model, path)
    return path
