"""Training of the two-tower model over sliding windows of each history, with full or sampled softmax."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from models.data import Dataset, FloatArray, IntArray, Interactions
from models.errors import ModelError
from models.evaluate import Scorer
from models.splits import sequences
from models.two_tower import TwoTower, TwoTowerConfig

EpochCallback = Callable[[int, float], None]
"""Called after every epoch with (epoch number starting at 1, mean training loss)."""


@dataclass
class TrainedTwoTower:
    """A fitted model with the record of how it was trained."""

    model: TwoTower
    config: TwoTowerConfig
    seconds: float
    losses: list[float] = field(default_factory=list)


@contextmanager
def seeded_torch(seed: int, threads: int) -> Iterator[None]:
    """Seed torch, cap its threads and force deterministic kernels; restores the previous settings on exit."""
    prev_threads = torch.get_num_threads()
    prev_det = torch.are_deterministic_algorithms_enabled()
    torch.set_num_threads(threads)
    torch.manual_seed(seed)
    torch.use_deterministic_algorithms(True)
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(prev_det)
        torch.set_num_threads(prev_threads)


def make_windows(seqs: list[IntArray], max_len: int, stride: int) -> tuple[IntArray, IntArray]:
    """Cut each history into next-item windows, left-padded with ``-1``: (inputs, targets), both ``[W, max_len]``.

    >>> x, y = make_windows([np.array([1, 2, 3, 4])], max_len=2, stride=2)
    >>> x.tolist(), y.tolist()
    ([[2, 3], [-1, 1]], [[3, 4], [-1, 2]])
    """
    inputs: list[IntArray] = []
    targets: list[IntArray] = []
    for seq in seqs:
        src, tgt = seq[:-1], seq[1:]
        end = src.shape[0]
        while end > 0:
            start = max(0, end - max_len)
            row_x = np.full(max_len, -1, dtype=np.int64)
            row_y = np.full(max_len, -1, dtype=np.int64)
            row_x[max_len - (end - start) :] = src[start:end]
            row_y[max_len - (end - start) :] = tgt[start:end]
            inputs.append(row_x)
            targets.append(row_y)
            end -= stride
    if not inputs:
        raise ModelError("no training windows: every user history has fewer than two items")
    return np.stack(inputs), np.stack(targets)


def last_items(seqs: list[IntArray], users: IntArray, max_len: int) -> IntArray:
    """The most recent ``max_len`` items of each user, left-padded with ``-1`` (``[len(users), max_len]``)."""
    out = np.full((users.shape[0], max_len), -1, dtype=np.int64)
    for row, u in enumerate(users.tolist()):
        tail = seqs[u][-max_len:]
        if tail.shape[0]:
            out[row, max_len - tail.shape[0] :] = tail
    return out


def full_softmax_loss(hidden: Tensor, targets: Tensor, table: Tensor) -> Tensor:
    """Cross-entropy over every item in the catalog."""
    return F.cross_entropy(hidden @ table.T, targets)


def sampled_softmax_loss(
    hidden: Tensor, targets: Tensor, table: Tensor, log_q: Tensor, *, n_negatives: int, gen: torch.Generator
) -> Tensor:
    """Softmax over in-batch positives plus random negatives drawn from ``exp(log_q)``, logQ-corrected.

    Both candidate sources are frequency-proportional, so subtracting ``log q`` keeps the estimate unbiased
    for popular items; a negative equal to a row's own target (accidental hit) is masked out.
    """
    positives, label = torch.unique(targets, return_inverse=True)
    negatives = torch.multinomial(log_q.exp(), n_negatives, replacement=True, generator=gen)
    cand = torch.cat([positives, negatives])
    logits = hidden @ table[cand].T - log_q[cand][None, :]
    hits = cand[None, :] == targets[:, None]
    hits[torch.arange(targets.shape[0]), label] = False
    return F.cross_entropy(logits.masked_fill(hits, float("-inf")), label)


def _log_q(history: Interactions, n_items: int) -> Tensor:
    counts = np.bincount(history.item, minlength=n_items).astype(np.float64) + 1.0
    return torch.from_numpy(np.log(counts / counts.sum())).float()


def _epoch(
    model: TwoTower, opt: torch.optim.Optimizer, data: tuple[Tensor, Tensor, Tensor], *, rng: np.random.Generator,
    log_q: Tensor, gen: torch.Generator,
) -> float:
    cfg = model.cfg
    xs, ys, feats = data
    order = torch.from_numpy(rng.permutation(xs.shape[0]))
    total, batches = 0.0, 0
    model.train()
    for start in range(0, xs.shape[0], cfg.batch_size):
        rows = order[start : start + cfg.batch_size]
        keep = torch.rand(model.n_items, generator=gen) >= cfg.id_dropout
        table = model.item_embeddings(keep)
        y = ys[rows]
        hidden = model.encode(xs[rows], feats[rows], table)[y >= 0]
        if cfg.loss == "full":
            loss = full_softmax_loss(hidden, y[y >= 0], table)
        else:
            loss = sampled_softmax_loss(hidden, y[y >= 0], table, log_q, n_negatives=cfg.n_negatives, gen=gen)
        opt.zero_grad(set_to_none=True)
        loss.backward()  # type: ignore[no-untyped-call]
        opt.step()
        total, batches = total + float(loss.item()), batches + 1
    return total / max(batches, 1)


def train_two_tower(
    dataset: Dataset, history: Interactions, cfg: TwoTowerConfig, on_epoch: EpochCallback | None = None
) -> TrainedTwoTower:
    """Train from scratch on ``history``; the same seed and config give the same weights."""
    seqs = sequences(history, dataset.n_users)
    xs, ys, owners = _windows_with_owner(seqs, cfg)
    feats = torch.from_numpy(dataset.user_features[owners]).float()
    started = time.perf_counter()
    with seeded_torch(cfg.seed, cfg.threads):
        model = TwoTower(cfg, dataset.content, dataset.user_features.shape[1])
        opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
        rng = np.random.default_rng(cfg.seed)
        gen = torch.Generator().manual_seed(cfg.seed)
        log_q = _log_q(history, dataset.n_items)
        data = (torch.from_numpy(xs), torch.from_numpy(ys), feats)
        losses: list[float] = []
        for epoch in range(1, cfg.epochs + 1):
            losses.append(_epoch(model, opt, data, rng=rng, log_q=log_q, gen=gen))
            if on_epoch is not None:
                on_epoch(epoch, losses[-1])
    model.eval()
    return TrainedTwoTower(model, cfg, time.perf_counter() - started, losses)


def _windows_with_owner(seqs: list[IntArray], cfg: TwoTowerConfig) -> tuple[IntArray, IntArray, IntArray]:
    xs_parts: list[IntArray] = []
    ys_parts: list[IntArray] = []
    owners: list[int] = []
    for u, seq in enumerate(seqs):
        if seq.shape[0] < 2:
            continue
        x, y = make_windows([seq], cfg.max_len, cfg.window_stride)
        xs_parts.append(x)
        ys_parts.append(y)
        owners.extend([u] * x.shape[0])
    if not xs_parts:
        raise ModelError("no training windows: every user history has fewer than two items")
    return np.concatenate(xs_parts), np.concatenate(ys_parts), np.asarray(owners, dtype=np.int64)


def user_embeddings(trained: TrainedTwoTower, seqs: list[IntArray], feats: FloatArray, users: IntArray) -> Tensor:
    """Embeddings of ``users`` from their most recent items (eval mode, no gradients)."""
    model = trained.model
    model.eval()
    with torch.no_grad():
        table = model.item_embeddings()
        seq = torch.from_numpy(last_items(seqs, users, trained.config.max_len))
        return model.encode(seq, torch.from_numpy(feats[users]).float(), table)[:, -1, :]


def two_tower_scorer(trained: TrainedTwoTower, dataset: Dataset, history: Interactions) -> Scorer:
    """A scorer for :func:`models.evaluate.evaluate` that reads each user's sequence from ``history``."""
    seqs = sequences(history, dataset.n_users)
    with torch.no_grad():
        table = trained.model.item_embeddings()

    def score(users: IntArray) -> FloatArray:
        with torch.no_grad():
            emb = user_embeddings(trained, seqs, dataset.user_features, users)
            return (emb @ table.T).numpy().astype(np.float32)

    return score
