"""Train/validation/test splits by time: leave-last-out per user and a global time cut."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
import scipy.sparse as sp

from models.data import IntArray, Interactions
from models.errors import DataError

Stage = Literal["valid", "test"]


@dataclass(frozen=True)
class Split:
    """Disjoint interaction sets; a stage is evaluated on its targets given everything before them.

    For ``valid`` the history is ``train``; for ``test`` it is ``train`` plus ``valid``.
    """

    protocol: str
    n_users: int
    n_items: int
    train: Interactions
    valid: Interactions
    test: Interactions

    def history(self, stage: Stage) -> Interactions:
        return self.train if stage == "valid" else Interactions.concat([self.train, self.valid])

    def targets(self, stage: Stage) -> Interactions:
        return self.valid if stage == "valid" else self.test


def user_item_matrix(inter: Interactions, n_users: int, n_items: int) -> sp.csr_matrix:
    """Binary user x item CSR matrix (repeated interactions count once)."""
    data = np.ones(len(inter), dtype=np.float32)
    mat = sp.csr_matrix((data, (inter.user, inter.item)), shape=(n_users, n_items))
    mat.data[:] = 1.0
    return mat


def sequences(inter: Interactions, n_users: int) -> list[IntArray]:
    """Each user's items in time order (``inter`` is sorted by user then time)."""
    bounds = np.searchsorted(inter.user, np.arange(n_users + 1))
    return [inter.item[bounds[u] : bounds[u + 1]] for u in range(n_users)]


def leave_last_out(inter: Interactions, n_users: int, n_items: int, min_len: int = 3) -> Split:
    """Last interaction per user is test, the one before is validation; users shorter than ``min_len`` train only.

    >>> i = Interactions.build(np.array([0, 0, 0, 1]), np.array([5, 6, 7, 5]), np.array([3, 1, 2, 9]))
    >>> s = leave_last_out(i, 2, 8)
    >>> s.train.item.tolist(), s.valid.item.tolist(), s.test.item.tolist()
    ([6, 5], [7], [5])
    """
    if min_len < 3:
        raise DataError(f"leave-last-out needs min_len >= 3, got {min_len}")
    counts = np.bincount(inter.user, minlength=n_users)
    last = np.searchsorted(inter.user, np.arange(n_users), side="right") - 1
    eligible = counts >= min_len
    test_rows = last[eligible]
    valid_rows = test_rows - 1
    role = np.zeros(len(inter), dtype=np.int8)
    role[valid_rows] = 1
    role[test_rows] = 2
    return Split(
        "leave-last-out", n_users, n_items, inter.take(role == 0), inter.take(role == 1), inter.take(role == 2)
    )


def global_time_split(
    inter: Interactions, n_users: int, n_items: int, valid_frac: float = 0.1, test_frac: float = 0.1
) -> Split:
    """Cut the whole log at two time quantiles; targets keep only users with history and items not yet seen.

    Nothing after a cut leaks into the part before it: every train timestamp < every valid timestamp < every test
    timestamp (ties at a cut go to the later part).
    """
    if not (0 < valid_frac < 1 and 0 < test_frac < 1 and valid_frac + test_frac < 1):
        raise DataError(f"bad split fractions valid={valid_frac} test={test_frac}")
    t_valid, t_test = np.quantile(inter.ts, [1 - valid_frac - test_frac, 1 - test_frac])
    train = inter.take(inter.ts < t_valid)
    valid = _new_targets(inter.take((inter.ts >= t_valid) & (inter.ts < t_test)), train, n_items)
    test = _new_targets(inter.take(inter.ts >= t_test), Interactions.concat([train, valid]), n_items)
    return Split("global-time", n_users, n_items, train, valid, test)


def _new_targets(targets: Interactions, history: Interactions, n_items: int) -> Interactions:
    known_users = np.zeros(int(max(targets.user.max(initial=0), history.user.max(initial=0))) + 1, dtype=bool)
    known_users[history.user] = True
    seen = set((history.user * n_items + history.item).tolist())
    pair = targets.user * n_items + targets.item
    _, first = np.unique(pair, return_index=True)
    keep = np.zeros(len(targets), dtype=bool)
    keep[first] = True
    keep &= known_users[targets.user] & ~np.isin(pair, np.fromiter(seen, dtype=np.int64, count=len(seen)))
    return targets.take(keep)
