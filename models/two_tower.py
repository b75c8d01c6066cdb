"""Two-tower retrieval model: a content-aware item tower and a causal self-attention user tower."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import torch
from torch import Tensor, nn

from models.data import N_AGE_BUCKETS, N_PRICE_BUCKETS, ItemContent

LossKind = Literal["full", "sampled"]


@dataclass(frozen=True)
class TwoTowerConfig:
    """Hyper-parameters of the two-tower model and its training run."""

    dim: int = 64
    max_len: int = 50
    n_layers: int = 2
    n_heads: int = 2
    dropout: float = 0.2
    id_dropout: float = 0.1
    epochs: int = 100
    batch_size: int = 128
    lr: float = 1e-3
    weight_decay: float = 0.0
    window_stride: int = 50
    loss: LossKind = "full"
    n_negatives: int = 512
    use_user_features: bool = True
    seed: int = 0
    threads: int = 2


class ItemTower(nn.Module):
    """Item embedding = id embedding + content embedding; index ``-1`` (or id dropout) leaves content only."""

    def __init__(self, n_items: int, n_categories: int, n_brands: int, dim: int) -> None:
        super().__init__()
        self.n_items = n_items
        self.id_emb = nn.Embedding(n_items + 1, dim, padding_idx=0)
        self.cat_proj = nn.Linear(n_categories, dim, bias=False)
        self.brand_emb = nn.Embedding(max(n_brands, 1), dim)
        self.price_emb = nn.Embedding(N_PRICE_BUCKETS, dim)
        self.age_emb = nn.Embedding(N_AGE_BUCKETS, dim)
        for emb in (self.id_emb, self.brand_emb, self.price_emb, self.age_emb):
            nn.init.normal_(emb.weight, std=0.05)
        with torch.no_grad():
            self.id_emb.weight[0].zero_()

    def forward(self, item_idx: Tensor, category: Tensor, brand: Tensor, price: Tensor, age: Tensor) -> Tensor:
        content = self.cat_proj(category) + self.brand_emb(brand) + self.price_emb(price) + self.age_emb(age)
        out: Tensor = self.id_emb(item_idx + 1) + content
        return out


class CausalBlock(nn.Module):
    """Pre-norm causal self-attention + feed-forward block, written with plain ops so it exports to ONNX."""

    def __init__(self, dim: int, n_heads: int, dropout: float) -> None:
        super().__init__()
        self.n_heads = n_heads
        self.norm1 = nn.LayerNorm(dim)
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)
        self.norm2 = nn.LayerNorm(dim)
        self.ff = nn.Sequential(nn.Linear(dim, dim * 2), nn.GELU(), nn.Dropout(dropout), nn.Linear(dim * 2, dim))
        self.drop = nn.Dropout(dropout)

    def forward(self, x: Tensor, bias: Tensor) -> Tensor:
        b, n, d = x.shape
        h = self.n_heads
        q, k, v = self.qkv(self.norm1(x)).reshape(b, n, 3, h, d // h).permute(2, 0, 3, 1, 4)
        att = (q @ k.transpose(-1, -2)) * (1.0 / math.sqrt(d // h)) + bias
        out = (self.drop(att.softmax(dim=-1)) @ v).transpose(1, 2).reshape(b, n, d)
        x = x + self.drop(self.proj(out))
        y: Tensor = x + self.drop(self.ff(self.norm2(x)))
        return y


class SequenceEncoder(nn.Module):
    """Encodes a left-padded item-embedding sequence; position ``L-1`` is the most recent item."""

    def __init__(self, cfg: TwoTowerConfig, n_user_features: int) -> None:
        super().__init__()
        self.max_len = cfg.max_len
        self.pos_emb = nn.Embedding(cfg.max_len, cfg.dim)
        nn.init.normal_(self.pos_emb.weight, std=0.05)
        self.blocks = nn.ModuleList([CausalBlock(cfg.dim, cfg.n_heads, cfg.dropout) for _ in range(cfg.n_layers)])
        self.norm = nn.LayerNorm(cfg.dim)
        self.drop = nn.Dropout(cfg.dropout)
        self.user_proj = nn.Linear(n_user_features, cfg.dim) if cfg.use_user_features else None

    def forward(self, seq_emb: Tensor, pad: Tensor, user_features: Tensor) -> Tensor:
        """``seq_emb`` [B, L, D], ``pad`` [B, L] bool; returns hidden states [B, L, D] (causal)."""
        n = seq_emb.shape[1]
        pos = torch.arange(n, device=seq_emb.device) + (self.max_len - n)
        x = self.drop(seq_emb + self.pos_emb(pos)[None, :, :])
        x = x * (~pad)[:, :, None].to(x.dtype)
        causal = torch.triu(torch.ones(n, n, dtype=torch.bool, device=x.device), diagonal=1)
        blocked = causal[None, :, :] | pad[:, None, :]
        bias = torch.zeros(blocked.shape, dtype=x.dtype, device=x.device).masked_fill(blocked, -1e9)[:, None]
        for block in self.blocks:
            x = block(x, bias)
        out: Tensor = self.norm(x)
        if self.user_proj is not None:
            out = out + self.user_proj(user_features)[:, None, :]
        return out


class TwoTower(nn.Module):
    """Both towers plus the item content of the training catalog (kept as buffers)."""

    c_cat: Tensor
    c_brand: Tensor
    c_price: Tensor
    c_age: Tensor

    def __init__(self, cfg: TwoTowerConfig, content: ItemContent, n_user_features: int) -> None:
        super().__init__()
        self.cfg = cfg
        n_items = int(content.category.shape[0])
        self.item_tower = ItemTower(n_items, int(content.category.shape[1]), content.n_brands, cfg.dim)
        self.encoder = SequenceEncoder(cfg, n_user_features)
        self.register_buffer("c_cat", torch.from_numpy(content.category).float())
        self.register_buffer("c_brand", torch.from_numpy(content.brand).long())
        self.register_buffer("c_price", torch.from_numpy(content.price_bucket).long())
        self.register_buffer("c_age", torch.from_numpy(content.age_bucket).long())

    @property
    def n_items(self) -> int:
        return self.item_tower.n_items

    def item_embeddings(self, id_keep: Tensor | None = None) -> Tensor:
        """Embeddings of every catalog item ``[n_items, D]``; ``id_keep`` False drops that item's id part."""
        idx = torch.arange(self.n_items, device=self.c_cat.device)
        if id_keep is not None:
            idx = torch.where(id_keep, idx, torch.full_like(idx, -1))
        emb: Tensor = self.item_tower(idx, self.c_cat, self.c_brand, self.c_price, self.c_age)
        return emb

    def encode(self, item_seq: Tensor, user_features: Tensor, table: Tensor) -> Tensor:
        """Hidden states for every position of ``item_seq`` (item indices, ``-1`` = padding)."""
        pad = item_seq < 0
        padded_table = torch.cat([torch.zeros_like(table[:1]), table], dim=0)
        seq_emb = padded_table[item_seq + 1] * math.sqrt(table.shape[1])
        hidden: Tensor = self.encoder(seq_emb, pad, user_features)
        return hidden


class UserTowerExport(nn.Module):
    """Serving form of the user tower: item sequence and user features to one embedding per row."""

    table: Tensor

    def __init__(self, model: TwoTower) -> None:
        super().__init__()
        self.model = model
        with torch.no_grad():
            self.register_buffer("table", model.item_embeddings().detach().clone())

    def forward(self, item_seq: Tensor, user_features: Tensor) -> Tensor:
        return self.model.encode(item_seq, user_features, self.table)[:, -1, :]


class ItemTowerExport(nn.Module):
    """Serving form of the item tower: content (and optional known id) to an embedding, for new items."""

    def __init__(self, model: TwoTower) -> None:
        super().__init__()
        self.tower = model.item_tower

    def forward(self, item_idx: Tensor, category: Tensor, brand: Tensor, price: Tensor, age: Tensor) -> Tensor:
        emb: Tensor = self.tower(item_idx, category, brand, price, age)
        return emb
