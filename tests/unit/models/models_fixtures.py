"""Tiny datasets for the model tests (a uniquely named module so no other conftest can shadow it)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from models.data import Dataset, Interactions, ItemContent, Vocab

ML100K = Path(__file__).resolve().parents[3] / ".." / "shared" / "data" / "ml-100k"


def cyclic_dataset(n_users: int = 40, n_items: int = 24, length: int = 14, seed: int = 0) -> Dataset:
    """Each user walks the item ring (i -> i+1) from a random start: next-item is predictable, popularity is not."""
    rng = np.random.default_rng(seed)
    users, items, ts = [], [], []
    for u in range(n_users):
        start = int(rng.integers(0, n_items))
        for t in range(length):
            users.append(u)
            items.append((start + t) % n_items)
            ts.append(1000 * u + t)
    cats = np.zeros((n_items, 3), dtype=np.float32)
    cats[np.arange(n_items), np.arange(n_items) % 3] = 1.0
    content = ItemContent(
        cats, ("a", "b", "c"), np.zeros(n_items, np.int64), 1, np.zeros(n_items, np.int64), np.zeros(n_items, np.int64)
    )
    inter = Interactions.build(np.asarray(users), np.asarray(items), np.asarray(ts))
    return Dataset(
        "cyclic",
        Vocab(tuple(f"u{u}" for u in range(n_users))),
        Vocab(tuple(f"i{i}" for i in range(n_items))),
        inter,
        content,
        np.zeros((n_users, 2), np.float32),
        ("f0", "f1"),
    )
