"""``streamrec replay``: stream a dataset through Kafka in time order into a worker, ask before held-out
interactions, and set the online HR/NDCG against the offline evaluation of the same model version.

Training-serving skews this guards against, and how each is closed:

* user features: workers see only events, so the version's user tower is trained on the serving defaults
  (``models.data.without_user_features``);
* equal timestamps: training sequences order ties as the online state does (``models.data.streaming_tie_order``);
* sequence length: the worker keeps at least the tower's ``max_len`` recent items (``features.last_n``);
* exploration and diversity are off (``exploration: none``, ``mmr_lambda`` 1), and a retrieval-only version
  is served in its two-tower score order, as offline evaluation ranks;
* seen items: each request excludes everything the user interacted with before, as the offline protocol does,
  and the ANN source retrieves the whole catalog so exclusions never starve it.
"""

from __future__ import annotations

import asyncio
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
from aiokafka import AIOKafkaProducer

from models.data import Dataset, FloatArray, IntArray, without_user_features
from models.replay_eval import Metrics, ReplayPlan, compare, list_metrics, offline_metrics, replay_plan, top_k
from models.splits import leave_last_out, sequences
from models.train_two_tower import last_items
from state.registry import FileRegistry, LoadedVersion
from streams.codec import encode
from streams.errors import InfraError
from streams.records import Event, ItemUpdate
from streams.settings import Settings

Progress = Callable[[str, int, int], None]
#: What every replay request carries: no exploration, pure score order.
REPLAY_CONTEXT: dict[str, str | int | float | bool] = {"exploration": "none", "mmr_lambda": 1.0}
#: Skews ``--skew`` can put back, to measure what each guard is worth.
SKEWS: tuple[str, ...] = ("user_features", "last_n", "exploration", "mmr", "seen")


def _no_progress(desc: str, done: int, total: int) -> None:
    del desc, done, total


@dataclass(frozen=True)
class ReplayOptions:
    data: Path
    dataset: str = "ml-100k"
    max_users: int | None = None
    sample_rate: float = 1.0
    seed: int = 0
    config: str = "default"
    k: int = 10
    deadline_ms: float = 5000.0
    state_timeout_s: float = 20.0
    train_replayed_only: bool = False  # train on the replayed users' interactions only (quick tests)
    skews: frozenset[str] = frozenset()  # guards to leave off (names in SKEWS)

    def __post_init__(self) -> None:
        unknown = sorted(self.skews - set(SKEWS))
        if unknown:
            raise ValueError(f"unknown skews {unknown}; valid: {list(SKEWS)}")

    def context(self) -> dict[str, str | int | float | bool]:
        """What each request carries (the overrides of a left-off guard are dropped)."""
        drop = {"exploration"} & self.skews | ({"mmr_lambda"} if "mmr" in self.skews else set())
        return {k: v for k, v in REPLAY_CONTEXT.items() if k not in drop}


@dataclass
class OnlineRun:
    lists: list[list[str]]
    fallbacks: int
    versions: set[str]
    latencies_ms: list[float]
    state_waits_ms: list[float]
    events: int


def replay_settings(
    base: Settings, registry: Path, n_items: int, max_len: int, skews: frozenset[str] = frozenset()
) -> Settings:
    """The worker's settings: ``base`` (already isolated) serving ``registry``'s champion without skews
    (except the guards named in ``skews``, left as ``base`` has them)."""
    update: dict[str, object] = {"category_cap": None}
    if "exploration" not in skews:
        update |= {"exploration_policy": "none", "epsilon": 0.0}
    if "mmr" not in skews:
        update |= {"mmr_lambda": 1.0}
    if "seen" not in skews:
        update |= {"ann_k": n_items, "candidate_limit": max(base.serving.candidate_limit, n_items + 1000)}
    serving = base.serving.model_copy(update=update)
    last_n = base.features.last_n if "last_n" in skews else max(base.features.last_n, max_len)
    features = base.features.model_copy(update={"last_n": last_n})
    worker = base.worker.model_copy(update={"batch_within_s": 0.01})
    models = base.models.model_copy(update={"registry_dir": registry, "poll_interval_s": 0.5})
    # a replay measures ranking, not latency: a busy machine's slow Redis reply must not degrade an answer
    redis = base.redis.model_copy(update={"socket_timeout_s": max(base.redis.socket_timeout_s, 2.0)})
    update_all = {"serving": serving, "features": features, "worker": worker, "models": models, "redis": redis}
    return base.model_copy(update=update_all)


def version_scores(
    loaded: LoadedVersion, seqs: list[IntArray], features: FloatArray, users: IntArray, *, float16_session: bool = False
) -> FloatArray:
    """Every item's score for ``users`` from the version's own ONNX user tower and item index (offline side).

    ``float16_session`` rounds the session embeddings as the online store keeps them (a diagnostic).
    """
    stored = loaded.index.stored() if loaded.index is not None and hasattr(loaded.index, "stored") else None
    if stored is None:
        raise InfraError(f"version {loaded.manifest.version}: replay needs an exact index that keeps its vectors")
    ids, vecs = stored
    table = np.zeros((len(loaded.item_ids), vecs.shape[1]), dtype=np.float32)
    table[ids] = vecs
    max_len = int(loaded.spec.graphs["user_tower"].inputs[0].shape[1] or 50)
    out = []
    for start in range(0, users.shape[0], 256):
        batch = users[start : start + 256]
        feeds = {"item_seq": last_items(seqs, batch, max_len), "user_features": features[batch].astype(np.float32)}
        (emb,) = loaded.sessions["user_tower"].run(["user_embedding"], feeds)
        emb = np.asarray(emb, dtype=np.float32)
        if float16_session:
            emb = emb.astype(np.float16).astype(np.float32)
        out.append(emb @ table.T)
    return np.concatenate(out) if out else np.zeros((0, table.shape[0]), np.float32)


def build_replay_version(
    opts: ReplayOptions, plan: ReplayPlan, work: Path, progress: Progress
) -> tuple[str, dict[str, float]]:
    """Train and publish the version the replay serves, into a private registry under ``work``."""
    from models.pipeline import build_version

    staging = work / "staging"
    metrics, window, cfg = build_version(
        opts.dataset,
        opts.data,
        staging,
        config=opts.config,
        seed=opts.seed,
        progress=progress,
        user_features="user_features" in opts.skews,
        users=plan.users if opts.train_replayed_only else None,
    )
    registry = FileRegistry(work / "registry")
    manifest = registry.publish(
        staging, split=f"{window['dataset']}/{window['protocol']}", metrics=metrics, data_window=window, config=cfg
    )
    registry.promote(manifest.version)
    return manifest.version, metrics


def _event(dataset: Dataset, row: int, user: int, item: int, ts: int) -> bytes:
    return encode(
        Event(
            event_id=f"{dataset.name}-{row}",
            type="view",
            user_id=dataset.users.ids[user],
            item_id=dataset.items.ids[item],
            ts=datetime.fromtimestamp(ts, UTC),
        )
    )


def _catalog(dataset: Dataset, created: int) -> list[tuple[bytes, bytes]]:
    """(key, item update) per item: its first genre as the category (the replay ranks by the model alone)."""
    cats = dataset.content.category
    names = dataset.content.category_names
    at = datetime.fromtimestamp(created, UTC)
    return [
        (
            item.encode(),
            encode(ItemUpdate(item_id=item, category=names[int(np.argmax(cats[j]))], price=0.0, created_at=at)),
        )
        for j, item in enumerate(dataset.items.ids)
    ]


async def _wait_state(store: Any, user_id: str, total: int, timeout_s: float) -> float:
    """Wait until the worker has applied ``total`` events of ``user_id``; returns milliseconds waited."""
    start = time.perf_counter()
    while True:
        state = await store.read_user(user_id)
        if state is not None and state.total >= total:
            return (time.perf_counter() - start) * 1000.0
        if time.perf_counter() - start > timeout_s:
            have = state.total if state is not None else 0
            raise InfraError(f"worker applied {have} of {total} events of user {user_id} within {timeout_s:.0f} s")
        await asyncio.sleep(0.005)


async def _ask(client: Any, user_id: str, seen: set[str], opts: ReplayOptions, run: OnlineRun) -> None:
    """One request, excluding what the user saw before (the offline protocol), recorded in ``run``."""
    resp = await client.recommend(
        user_id,
        opts.k,
        context=opts.context(),
        exclude=[] if "seen" in opts.skews else sorted(seen),
        deadline_ms=opts.deadline_ms,
    )
    run.lists.append([it.item_id for it in resp.items])
    run.fallbacks += int(resp.fallback)
    run.versions.add(resp.model_version)
    run.latencies_ms.append(resp.latency_ms)


async def stream_and_ask(
    settings: Settings, dataset: Dataset, plan: ReplayPlan, opts: ReplayOptions, progress: Progress
) -> OnlineRun:
    """Produce the plan's events in order; before each asked row, wait for the user's state, then ask."""
    from agents.runtime import build_store
    from streams.client import RecClient
    from streams.topics import topic_names

    names = topic_names(settings.kafka)
    inter = dataset.interactions
    asks = set(plan.asks.tolist())
    run = OnlineRun([], 0, set(), [], [], 0)
    sent: dict[int, int] = {}
    seen: dict[int, set[str]] = {}
    store = build_store(settings)
    producer = AIOKafkaProducer(bootstrap_servers=settings.kafka.bootstrap_servers, linger_ms=5, acks=1)
    await producer.start()
    try:
        for key, line in _catalog(dataset, int(inter.ts.min())):
            await producer.send(names.items, line, key=key)
        async with RecClient(settings) as client:
            for pos, row in enumerate(plan.stream.tolist()):
                u, i = int(inter.user[row]), int(inter.item[row])
                uid = dataset.users.ids[u]
                if pos in asks:
                    await producer.flush()
                    run.state_waits_ms.append(await _wait_state(store, uid, sent.get(u, 0), opts.state_timeout_s))
                    await _ask(client, uid, seen.get(u, set()), opts, run)
                    progress("asked", len(run.lists), len(asks))
                await producer.send(names.events, _event(dataset, row, u, i, int(inter.ts[row])), key=uid.encode())
                sent[u] = sent.get(u, 0) + 1
                seen.setdefault(u, set()).add(dataset.items.ids[i])
            await producer.flush()
        run.events = len(plan.stream)
    finally:
        await producer.stop()
        await store.close()
    return run


def offline_side(
    loaded: LoadedVersion, dataset: Dataset, plan: ReplayPlan, k: int
) -> tuple[Metrics, list[list[str]], Metrics]:
    """Offline metrics and top-k lists of the version on the asked interactions (history = all before them),
    and the metrics with session embeddings rounded to float16 as the online store keeps them."""
    split = leave_last_out(dataset.interactions, dataset.n_users, dataset.n_items)
    seqs = sequences(split.history("test"), dataset.n_users)
    rows = plan.ask_rows
    users = dataset.interactions.user[rows]
    scores = version_scores(loaded, seqs, dataset.user_features, users)
    seen = [seqs[int(u)].tolist() for u in users]
    metrics = offline_metrics(scores, seen, dataset.interactions.item[rows], k)
    lists = [[dataset.items.ids[j] for j in top] for top in top_k(scores, seen, k)]
    rounded = version_scores(loaded, seqs, dataset.user_features, users, float16_session=True)
    as_stored = offline_metrics(rounded, seen, dataset.interactions.item[rows], k)
    return metrics, lists, as_stored


async def run_online(
    settings: Settings, dataset: Dataset, plan: ReplayPlan, opts: ReplayOptions, progress: Progress
) -> OnlineRun:
    """Start a worker on fresh topics, stream, ask, and clean up."""
    from streams.admin import drop_run_topics, ensure_topics
    from streams.bench.harness import WorkerProcess, wait_until_serving
    from streams.client import RecClient

    await ensure_topics(settings.kafka)
    log = Path(".run/replay") / f"{settings.worker.app_id}.log"
    worker = WorkerProcess(settings, log).start()
    try:
        async with RecClient(settings) as client:
            await wait_until_serving(client, worker)
        return await stream_and_ask(settings, dataset, plan, opts, progress)
    finally:
        worker.stop()
        await drop_run_topics(settings)


def run_replay(base: Settings, opts: ReplayOptions, progress: Progress = _no_progress) -> dict[str, Any]:
    """The whole replay; returns the JSON report (``pass`` is the 5 % agreement verdict)."""
    from models.pipeline import load_dataset
    from streams.bench.harness import isolated, summarize_ms

    started = time.perf_counter()
    raw, _ = load_dataset(opts.dataset, opts.data)
    dataset = raw if "user_features" in opts.skews else without_user_features(raw)
    split = leave_last_out(dataset.interactions, dataset.n_users, dataset.n_items)
    plan = replay_plan(
        dataset.interactions, split, max_users=opts.max_users, sample_rate=opts.sample_rate, seed=opts.seed
    )
    with tempfile.TemporaryDirectory(prefix="streamrec-replay-") as tmp:
        work = Path(tmp)
        version, version_metrics = build_replay_version(opts, plan, work, progress)
        loaded = FileRegistry(work / "registry").load(version)
        offline, offline_lists, offline16 = offline_side(loaded, dataset, plan, opts.k)
        max_len = int(loaded.spec.graphs["user_tower"].inputs[0].shape[1] or 50)
        settings = replay_settings(isolated(base, "replay"), work / "registry", dataset.n_items, max_len, opts.skews)
        trained_s = time.perf_counter() - started
        online = asyncio.run(run_online(settings, dataset, plan, opts, progress))
    targets = [dataset.items.ids[j] for j in dataset.interactions.item[plan.ask_rows]]
    verdict = compare(list_metrics(online.lists, targets, opts.k), offline)
    same_lists = sum(a == b for a, b in zip(online.lists, offline_lists, strict=True))
    return {
        "dataset": opts.dataset,
        "model_version": version,
        "served_versions": sorted(online.versions),
        "config": opts.config,
        "trained_on": "replayed users" if opts.train_replayed_only else "all users",
        "seed": opts.seed,
        "users": int(plan.users.shape[0]),
        "events_streamed": online.events,
        "interactions_asked": len(online.lists),
        "sample_rate": opts.sample_rate,
        "k": opts.k,
        **verdict,
        "identical_lists": round(same_lists / max(len(online.lists), 1), 6),
        "offline_float16_session": {n: round(v, 6) for n, v in offline16.summary().items() if n != "interactions"},
        "fallback_answers": online.fallbacks,
        "request_latency": summarize_ms(online.latencies_ms),
        "state_wait": summarize_ms(online.state_waits_ms),
        "version_test_metrics": {k: round(v, 6) for k, v in version_metrics.items()},
        "train_seconds": round(trained_s, 1),
        "seconds": round(time.perf_counter() - started, 1),
        "skews_left_on": sorted(opts.skews),
        "skew_guards": [
            "user tower trained on serving defaults (no profile features online)",
            "equal timestamps ordered by item id, as the online state orders them",
            f"state keeps {max(base.features.last_n, max_len)} recent items >= tower max_len {max_len}",
            "exploration none, mmr_lambda 1, retrieval-only version ranked by its two-tower score",
            "requests exclude every item seen before (offline protocol); ANN retrieves the whole catalog",
        ],
    }
