"""Splits: leave-last-out and global time cut, checked for leakage."""

from __future__ import annotations

import numpy as np
from models_fixtures import cyclic_dataset

from models.data import Interactions
from models.splits import global_time_split, leave_last_out, sequences


def random_log(seed: int = 0, n: int = 400) -> Interactions:
    rng = np.random.default_rng(seed)
    return Interactions.build(rng.integers(0, 30, n), rng.integers(0, 50, n), rng.integers(0, 10_000, n))


def test_leave_last_out_takes_the_two_latest_per_user_and_never_leaks() -> None:
    inter = random_log()
    split = leave_last_out(inter, 30, 50)
    assert len(split.train) + len(split.valid) + len(split.test) == len(inter)
    for u in range(30):
        tr = split.train.ts[split.train.user == u]
        va = split.valid.ts[split.valid.user == u]
        te = split.test.ts[split.test.user == u]
        if te.size:
            assert va.size == 1 and te.size == 1
            assert tr.max(initial=-1) <= va[0] <= te[0]


def test_short_histories_stay_in_train() -> None:
    inter = Interactions.build(np.array([0, 0, 1, 1, 1]), np.array([1, 2, 3, 4, 5]), np.array([1, 2, 1, 2, 3]))
    split = leave_last_out(inter, 2, 6)
    assert split.train.item.tolist() == [1, 2, 3]
    assert split.valid.item.tolist() == [4] and split.test.item.tolist() == [5]
    assert sequences(split.history("test"), 2)[1].tolist() == [3, 4]


def test_global_time_split_orders_parts_and_drops_cold_or_seen_targets() -> None:
    inter = random_log(1, 2000)
    split = global_time_split(inter, 30, 50)
    assert split.train.ts.max() < split.valid.ts.min() <= split.valid.ts.max() < split.test.ts.min()
    seen = set(zip(split.history("test").user.tolist(), split.history("test").item.tolist(), strict=True))
    assert not seen & set(zip(split.test.user.tolist(), split.test.item.tolist(), strict=True))
    assert set(split.test.user.tolist()) <= set(split.history("test").user.tolist())


def test_cyclic_fixture_is_leave_last_out_ready() -> None:
    ds = cyclic_dataset()
    split = leave_last_out(ds.interactions, ds.n_users, ds.n_items)
    assert len(split.test) == ds.n_users
