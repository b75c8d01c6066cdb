"""Multi-task ranker (shared bottom or MMoE) with ESMM heads p(click) and p(purchase | click)."""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from models.calibration import auc, expected_calibration_error, fit_temperature, log_loss
from models.data import FloatArray
from models.errors import ModelError
from models.ranker_features import POSITION, RANKER_FEATURES, RankerData
from models.train_two_tower import seeded_torch


@dataclass(frozen=True)
class RankerConfig:
    """Architecture and training settings; ``n_experts`` 0 means a shared bottom, more means MMoE."""

    hidden: int = 64
    tower: int = 32
    n_experts: int = 0
    epochs: int = 30
    batch_size: int = 512
    lr: float = 3e-3
    weight_decay: float = 1e-5
    train_frac: float = 0.8
    calib_frac: float = 0.1
    seed: int = 0
    threads: int = 2


def _mlp(n_in: int, n_out: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(n_in, n_out), nn.ReLU())


Z_CLIP = 6.0


class MultiTaskRanker(nn.Module):
    """Raw features in, (click logit, purchase-given-click logit) out; standardisation is part of the model."""

    mean: Tensor
    inv_std: Tensor
    temperature: Tensor

    def __init__(self, cfg: RankerConfig, mean: FloatArray, std: FloatArray) -> None:
        super().__init__()
        n = int(mean.shape[0])
        self.register_buffer("mean", torch.from_numpy(mean).float())
        # A feature (nearly) constant in training carries no signal: it is ignored rather than scaled by
        # ~1e6, which would saturate every prediction the first time serving sees another value of it.
        informative = std > 1e-3 * np.maximum(1.0, np.abs(mean))
        inv_std = np.where(informative, 1.0 / np.maximum(std, 1e-12), 0.0)
        self.register_buffer("inv_std", torch.from_numpy(inv_std).float())
        self.register_buffer("temperature", torch.ones(2))
        n_paths = max(cfg.n_experts, 1)
        self.experts = nn.ModuleList([_mlp(n, cfg.hidden) for _ in range(n_paths)])
        self.gates = nn.ModuleList([nn.Linear(n, n_paths) for _ in range(2)]) if cfg.n_experts > 0 else None
        self.towers = nn.ModuleList(
            [nn.Sequential(_mlp(cfg.hidden, cfg.tower), nn.Linear(cfg.tower, 1)) for _ in range(2)]
        )

    def logits(self, x: Tensor) -> tuple[Tensor, Tensor]:
        # Clipped standard scores: serving values far outside the training range cannot saturate the towers.
        z = ((x - self.mean) * self.inv_std).clamp(-Z_CLIP, Z_CLIP)
        if self.gates is None:
            shared = self.experts[0](z)
            inputs = [shared, shared]
        else:
            outs = torch.stack([e(z) for e in self.experts], dim=1)
            inputs = [(g(z).softmax(dim=-1)[:, :, None] * outs).sum(dim=1) for g in self.gates]
        click = self.towers[0](inputs[0]).squeeze(-1) / self.temperature[0]
        cvr = self.towers[1](inputs[1]).squeeze(-1) / self.temperature[1]
        return click, cvr

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """(p(click), p(click and purchase)) for every row."""
        click, cvr = self.logits(x)
        p_click = torch.sigmoid(click)
        return p_click, p_click * torch.sigmoid(cvr)


class RankerExport(nn.Module):
    """Serving form: takes the features without ``position`` and scores every row as if shown at the top."""

    def __init__(self, model: MultiTaskRanker, position_value: float = 0.0) -> None:
        super().__init__()
        self.model = model
        self.pos_index = RANKER_FEATURES.index(POSITION)
        self.position_value = position_value

    def forward(self, features: Tensor) -> tuple[Tensor, Tensor]:
        pos = torch.full_like(features[:, :1], self.position_value)
        x = torch.cat([features[:, : self.pos_index], pos, features[:, self.pos_index :]], dim=1)
        probs: tuple[Tensor, Tensor] = self.model(x)
        return probs


@dataclass
class TrainedRanker:
    model: MultiTaskRanker
    config: RankerConfig
    metrics: dict[str, float]
    seconds: float


def esmm_loss(model: MultiTaskRanker, x: Tensor, click: Tensor, purchase: Tensor) -> Tensor:
    """BCE on p(click) plus BCE on p(click) x p(purchase | click), both over every impression."""
    z_click, z_cvr = model.logits(x)
    p_ctcvr = torch.sigmoid(z_click) * torch.sigmoid(z_cvr)
    ctcvr = F.binary_cross_entropy(p_ctcvr.clamp(1e-7, 1 - 1e-7), purchase)
    return F.binary_cross_entropy_with_logits(z_click, click) + ctcvr


def _split_rows(n: int, cfg: RankerConfig) -> tuple[slice, slice, slice]:
    a, b = int(n * cfg.train_frac), int(n * (cfg.train_frac + cfg.calib_frac))
    if a < 10 or b - a < 10 or n - b < 10:
        raise ModelError(f"ranker needs at least 10 impressions in each time slice, got {n} in total")
    return slice(0, a), slice(a, b), slice(b, n)


def _fit(model: MultiTaskRanker, x: Tensor, click: Tensor, purchase: Tensor, cfg: RankerConfig) -> None:
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    rng = np.random.default_rng(cfg.seed)
    model.train()
    for _ in range(cfg.epochs):
        order = torch.from_numpy(rng.permutation(x.shape[0]))
        for start in range(0, x.shape[0], cfg.batch_size):
            rows = order[start : start + cfg.batch_size]
            loss = esmm_loss(model, x[rows], click[rows], purchase[rows])
            opt.zero_grad(set_to_none=True)
            loss.backward()  # type: ignore[no-untyped-call]
            opt.step()
    model.eval()


def _calibrate(model: MultiTaskRanker, x: Tensor, click: FloatArray, purchase: FloatArray) -> None:
    with torch.no_grad():
        z_click, z_cvr = (t.numpy() for t in model.logits(x))
    t_click = fit_temperature(z_click, click)
    p_click = 1.0 / (1.0 + np.exp(-z_click / t_click))
    t_cvr = fit_temperature(z_cvr, purchase, scale=p_click)
    model.temperature.copy_(torch.tensor([t_click, t_cvr]))


def evaluate_ranker(model: MultiTaskRanker, x: FloatArray, click: FloatArray, purchase: FloatArray) -> dict[str, float]:
    """AUC, log loss and ECE of both heads on the given rows."""
    with torch.no_grad():
        p_click, p_buy = (t.numpy() for t in model(torch.from_numpy(x)))
    return {
        "auc_click": auc(click, p_click), "logloss_click": log_loss(click, p_click),
        "ece_click": expected_calibration_error(click, p_click),
        "auc_purchase": auc(purchase, p_buy), "logloss_purchase": log_loss(purchase, p_buy),
        "ece_purchase": expected_calibration_error(purchase, p_buy),
    }


def train_ranker(data: RankerData, cfg: RankerConfig) -> TrainedRanker:
    """Fit on the oldest impressions, calibrate temperatures on the next slice, report on the newest."""
    tr, ca, te = _split_rows(data.x.shape[0], cfg)
    started = time.perf_counter()
    with seeded_torch(cfg.seed, cfg.threads):
        x = torch.from_numpy(data.x)
        click, purchase = torch.from_numpy(data.clicked), torch.from_numpy(data.purchased)
        model = MultiTaskRanker(cfg, data.x[tr].mean(axis=0), data.x[tr].std(axis=0))
        _fit(model, x[tr], click[tr], purchase[tr], cfg)
        before = evaluate_ranker(model, data.x[te], data.clicked[te], data.purchased[te])
        _calibrate(model, x[ca], data.clicked[ca], data.purchased[ca])
        after = evaluate_ranker(model, data.x[te], data.clicked[te], data.purchased[te])
    metrics = {**after, **{f"uncalibrated_{k}": v for k, v in before.items() if k.startswith("ece")}}
    metrics["temperature_click"], metrics["temperature_purchase"] = (float(t) for t in model.temperature)
    metrics["test_rows"] = float(te.stop - te.start)
    return TrainedRanker(model, cfg, metrics, time.perf_counter() - started)
