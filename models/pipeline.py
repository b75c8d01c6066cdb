"""End-to-end jobs behind the CLI: evaluate every model in one harness, and build a registry version."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from models.baselines import ALS_GRID, EASE_GRID, Als, Ease, Popularity, Recommender, tune_and_test
from models.configs import ranker_config, two_tower_config
from models.data import Dataset, IntArray, load_movielens_100k, restrict_users, without_user_features
from models.drift import DriftReference
from models.evaluate import EvalResult, evaluate
from models.export import export_item_index, export_item_tower, export_ranker, export_user_tower
from models.ranker import MultiTaskRanker, RankerExport, TrainedRanker, train_ranker
from models.ranker_features import RANKER_FEATURES, SERVING_FEATURES, TT_DOT, RankerData, build_ranker_data
from models.simlog import SimLog, load_simulator
from models.spec import FeatureSpec
from models.splits import Split, leave_last_out
from models.train_two_tower import EpochCallback, TrainedTwoTower, train_two_tower, two_tower_scorer
from state.registry import DRIFT_FILE

Progress = Callable[[str, int, int], None]
"""(task description, completed, total): the CLI turns these into progress bars."""

METRIC_KEYS = ("ndcg@10", "hr@10", "recall@50", "mrr", "coverage", "ild")


@dataclass
class EvalReport:
    """What ``streamrec eval`` writes, plus the per-user results the plot needs."""

    dataset: str
    protocol: str
    config: str
    results: dict[str, dict[str, Any]] = field(default_factory=dict)
    per_model: dict[str, EvalResult] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {"dataset": self.dataset, "protocol": self.protocol, "config": self.config,
                "results": self.results, "notes": self.notes}


def _no_progress(desc: str, done: int, total: int) -> None:
    del desc, done, total


def _summary(result: EvalResult, **extra: Any) -> dict[str, Any]:
    out: dict[str, Any] = {k: round(result.metrics[k], 6) for k in METRIC_KEYS}
    out["users"] = int(result.metrics["users"])
    out.update(extra)
    return out


def load_dataset(kind: str, data: Path) -> tuple[Dataset, SimLog | None]:
    """``ml-100k``: the MovieLens directory; ``sim``: a directory with ``events.jsonl`` and ``catalog.jsonl``."""
    if kind == "ml-100k":
        return load_movielens_100k(data), None
    if kind == "sim":
        log = load_simulator(data / "events.jsonl", data / "catalog.jsonl")
        return log.dataset, log
    from models.errors import DataError

    raise DataError(f"unknown dataset {kind!r}; valid: ml-100k, sim")


def run_peers(split: Split, dataset: Dataset, report: EvalReport, progress: Progress) -> None:
    """Popularity, ALS and EASE, each tuned on validation and refitted on train+valid before the test."""
    peers: tuple[tuple[str, Callable[..., Recommender], Sequence[Mapping[str, float]]], ...] = (
        ("popularity", Popularity, ({},)), ("ease", Ease, EASE_GRID), ("als", Als, ALS_GRID),
    )
    for n, (name, factory, grid) in enumerate(peers):
        progress("peers", n, len(peers))
        started = time.perf_counter()
        run = tune_and_test(name, factory, grid, split, dataset.content.category)
        report.per_model[name] = run.test
        report.results[name] = _summary(run.test, params=run.params, valid_ndcg10=round(run.valid_ndcg, 6),
                                        fit_seconds=round(time.perf_counter() - started, 2))
    progress("peers", len(peers), len(peers))


def train_retrieval(
    dataset: Dataset, split: Split, config: str, seed: int, progress: Progress
) -> TrainedTwoTower:
    """Train the two-tower model on everything before the test targets (train + validation)."""
    cfg = two_tower_config(config, seed)
    on_epoch: EpochCallback = lambda epoch, loss: progress("two-tower epochs", epoch, cfg.epochs)  # noqa: E731
    progress("two-tower epochs", 0, cfg.epochs)
    return train_two_tower(dataset, split.history("test"), cfg, on_epoch)


def evaluate_all(
    kind: str, data: Path, *, config: str = "default", seed: int = 0, progress: Progress = _no_progress
) -> EvalReport:
    """Peers and our retrieval on the leave-last-out test targets, same split, same metrics."""
    dataset, log = load_dataset(kind, data)
    split = leave_last_out(dataset.interactions, dataset.n_users, dataset.n_items)
    report = EvalReport(dataset.name, split.protocol, config)
    run_peers(split, dataset, report, progress)
    trained = train_retrieval(dataset, split, config, seed, progress)
    result = evaluate(two_tower_scorer(trained, dataset, split.history("test")), split, "test",
                      dataset.content.category)
    report.per_model["two_tower"] = result
    report.results["two_tower"] = _summary(result, train_seconds=round(trained.seconds, 1),
                                           epochs=trained.config.epochs, seed=seed,
                                           config=asdict(trained.config))
    if log is None:
        report.notes.append("retrieval+ranker not evaluated: this dataset has no impressions to train a ranker on")
    else:
        ranked = train_sim_ranker(log, trained, config, seed)
        report.results["ranker"] = {k: round(v, 6) for k, v in ranked.metrics.items()}
    return report


def with_two_tower_dot(data: RankerData, trained: TrainedTwoTower, dataset: Dataset) -> RankerData:
    """Fill ``x_tt_dot`` with the two-tower score of each impression's item given the user's recent items."""
    model = trained.model
    x = data.x.copy()
    with torch.no_grad():
        table = model.item_embeddings()
        for start in range(0, x.shape[0], 4096):
            rows = slice(start, start + 4096)
            seq = torch.from_numpy(data.recent[rows, -trained.config.max_len :])
            feats = torch.from_numpy(dataset.user_features[data.user[rows]]).float()
            emb = model.encode(seq, feats, table)[:, -1, :]
            x[rows, TT_DOT] = (emb * table[torch.from_numpy(data.item[rows])]).sum(dim=1).numpy()
    return RankerData(x, data.clicked, data.purchased, data.ts, data.user, data.item, data.recent)


def train_sim_ranker(log: SimLog, trained: TrainedTwoTower, config: str, seed: int) -> TrainedRanker:
    data = with_two_tower_dot(build_ranker_data(log), trained, log.dataset)
    return train_ranker(data, ranker_config(config, seed))


def drift_reference(
    model: MultiTaskRanker, data: RankerData, *, max_rows: int = 50_000, seed: int = 0
) -> DriftReference:
    """Histograms of the serving features and of the exported ranker's scores over (a sample of) the training rows.

    Scores are the serving graph's (position fixed at the top); ``value`` is expected revenue,
    ``p_purchase x price`` with the price recovered from ``i_log_price``.
    """
    rows = np.arange(data.x.shape[0])
    if rows.size > max_rows:
        rows = np.sort(np.random.default_rng(seed).choice(rows, max_rows, replace=False))
    cols = [RANKER_FEATURES.index(n) for n in SERVING_FEATURES]
    x = np.ascontiguousarray(data.x[rows][:, cols], dtype=np.float32)
    with torch.no_grad():
        p_click, p_purchase = (t.numpy() for t in RankerExport(model)(torch.from_numpy(x)))
    price = np.expm1(x[:, SERVING_FEATURES.index("i_log_price")].astype(np.float64))
    scores = {"p_click": p_click, "p_purchase": p_purchase, "value": p_purchase * price}
    return DriftReference.build(SERVING_FEATURES, x, scores, value_formula="expected_revenue")


def build_version(
    kind: str, data: Path, staging: Path, *, config: str = "default", seed: int = 0, progress: Progress = _no_progress,
    user_features: bool = True, users: IntArray | None = None,
) -> tuple[dict[str, float], dict[str, Any], dict[str, Any]]:
    """Train, evaluate and export everything a version needs into ``staging``: (metrics, data window, config).

    ``user_features=False`` trains the user tower on the serving defaults instead of the dataset's profile
    columns (see :func:`models.data.without_user_features`); ``users`` keeps only their interactions.
    """
    dataset, log = load_dataset(kind, data)
    if not user_features:
        dataset = without_user_features(dataset)
    if users is not None:
        dataset = restrict_users(dataset, users)
    split = leave_last_out(dataset.interactions, dataset.n_users, dataset.n_items)
    trained = train_retrieval(dataset, split, config, seed, progress)
    result = evaluate(two_tower_scorer(trained, dataset, split.history("test")), split, "test",
                      dataset.content.category)
    metrics = {k: result.metrics[k] for k in METRIC_KEYS}
    staging.mkdir(parents=True, exist_ok=True)
    graphs = {
        "user_tower": export_user_tower(trained, dataset, staging / "user_tower.onnx"),
        "item_tower": export_item_tower(trained, dataset, staging / "item_tower.onnx"),
    }
    dim = export_item_index(trained, dataset, staging / "items.faiss", staging / "item_ids.json")
    if log is not None:
        ranker_data = with_two_tower_dot(build_ranker_data(log), trained, log.dataset)
        ranked = train_ranker(ranker_data, ranker_config(config, seed))
        graphs["ranker"] = export_ranker(ranked.model, staging / "ranker.onnx")
        metrics.update({f"ranker_{k}": v for k, v in ranked.metrics.items()})
        reference = drift_reference(ranked.model, ranker_data, seed=seed)
        (staging / DRIFT_FILE).write_text(reference.model_dump_json(), encoding="utf-8")
    spec = FeatureSpec(graphs=graphs, index_file="items.faiss", item_ids_file="item_ids.json", embedding_dim=dim)
    (staging / "feature_spec.json").write_text(spec.model_dump_json(indent=2), encoding="utf-8")
    ts = dataset.interactions.ts
    window = {"dataset": dataset.name, "source": str(data), "protocol": split.protocol,
              "first_ts": int(ts.min()), "last_ts": int(ts.max()), "interactions": len(dataset.interactions),
              "users": dataset.n_users, "items": dataset.n_items}
    cfg = {"two_tower": asdict(trained.config), "name": config, "train_seconds": round(trained.seconds, 1),
           "user_features": user_features, "users": "all" if users is None else int(users.shape[0])}
    return metrics, window, cfg


def write_report(report: EvalReport, path: Path) -> None:
    path.write_text(json.dumps(report.to_json(), indent=2, default=str), encoding="utf-8")

