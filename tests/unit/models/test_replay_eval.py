"""Replay evaluation: the streamed order, the asked interactions, online list metrics against the offline protocol."""

from __future__ import annotations

import math

import numpy as np
import pytest

from models.data import Interactions, streaming_tie_order
from models.evaluate import evaluate
from models.replay_eval import compare, list_metrics, offline_metrics, relative_difference, replay_plan, top_k
from models.splits import leave_last_out


def _world(seed: int = 0, n_users: int = 30, n_items: int = 40) -> Interactions:
    rng = np.random.default_rng(seed)
    users = np.repeat(np.arange(n_users), 8)
    items = rng.integers(0, n_items, users.shape[0])
    ts = rng.integers(0, 50, users.shape[0])  # many equal timestamps
    return Interactions.build(users, items, ts, tie=streaming_tie_order([str(i) for i in items]))


def test_plan_streams_in_time_order_keeping_each_users_order_and_asks_before_the_held_out_row() -> None:
    inter = _world()
    split = leave_last_out(inter, 30, 40)
    plan = replay_plan(inter, split)
    assert sorted(plan.stream.tolist()) == list(range(len(inter)))
    assert np.all(np.diff(inter.ts[plan.stream]) >= 0)
    for u in range(30):
        mine = plan.stream[inter.user[plan.stream] == u]
        assert mine.tolist() == sorted(mine.tolist())  # rows are sorted by user then time: the user's own order
    asked = plan.ask_rows
    assert sorted(inter.user[asked].tolist()) == list(range(30))
    test_pairs = set(zip(split.test.user.tolist(), split.test.item.tolist(), split.test.ts.tolist(), strict=True))
    assert {(int(inter.user[r]), int(inter.item[r]), int(inter.ts[r])) for r in asked} == test_pairs
    for pos in plan.asks.tolist():  # nothing of that user comes after the asked row
        assert int(inter.user[plan.stream[pos]]) not in inter.user[plan.stream[pos + 1 :]].tolist()


def test_plan_samples_users_and_interactions_with_its_seed() -> None:
    inter = _world()
    split = leave_last_out(inter, 30, 40)
    a = replay_plan(inter, split, max_users=10, sample_rate=0.5, seed=3)
    b = replay_plan(inter, split, max_users=10, sample_rate=0.5, seed=3)
    assert a.users.tolist() == b.users.tolist() and a.asks.tolist() == b.asks.tolist()
    assert a.users.shape[0] == 10 and set(inter.user[a.stream].tolist()) == set(a.users.tolist())
    assert 0 < a.asks.shape[0] < 10
    with pytest.raises(ValueError, match="sample_rate"):
        replay_plan(inter, split, sample_rate=0.0)


def test_ties_are_ordered_by_item_id_string_like_the_online_state() -> None:
    inter = Interactions.build(
        np.zeros(3, np.int64), np.array([0, 1, 2]), np.array([5, 5, 5]), tie=streaming_tie_order(["9", "10", "100"])
    )
    assert inter.item.tolist() == [1, 2, 0]  # "10" < "100" < "9"


def test_list_metrics_hit_and_ndcg_by_position() -> None:
    m = list_metrics([["a", "b", "c"], ["x"] * 10 + ["t"], []], ["c", "t", "t"], k=10)
    assert m.hits.tolist() == [1.0, 0.0, 0.0]
    assert m.ndcg[0] == pytest.approx(0.5) and m.ndcg[1] == 0.0
    assert m.summary() == {"hr@10": pytest.approx(1 / 3), "ndcg@10": pytest.approx(0.5 / 3), "interactions": 3.0}


def test_offline_metrics_agree_with_models_evaluate_on_the_same_targets() -> None:
    inter = _world(seed=1)
    split = leave_last_out(inter, 30, 40)
    scores = np.random.default_rng(2).normal(size=(30, 40)).astype(np.float32)
    full = evaluate(lambda users: scores[users], split, "test", np.eye(40, dtype=np.float32), k=10)
    seen = [sorted(set(split.history("test").item[split.history("test").user == u].tolist())) for u in range(30)]
    mine = offline_metrics(scores[split.test.user], [seen[u] for u in split.test.user], split.test.item, k=10)
    assert mine.summary()["hr@10"] == pytest.approx(full.metrics["hr@10"])
    assert mine.summary()["ndcg@10"] == pytest.approx(full.metrics["ndcg@10"])
    # served lists equal to the offline top-10 give the same numbers online
    lists = [[str(i) for i in row] for row in top_k(scores[split.test.user], [seen[u] for u in split.test.user])]
    online = list_metrics(lists, [str(i) for i in split.test.item.tolist()], 10)
    verdict = compare(online, mine)
    assert verdict["pass"] and verdict["relative_difference"] == {"hr@10": 0.0, "ndcg@10": 0.0}
    assert verdict["interaction_agreement"] == 1.0


def test_a_skewed_online_side_fails_the_comparison() -> None:
    offline = list_metrics([["a"], ["b"], ["c"], ["d"]], ["a", "b", "c", "z"], 10)
    online = list_metrics([["a"], ["b"], ["x"], ["d"]], ["a", "b", "c", "z"], 10)
    verdict = compare(online, offline)
    assert verdict["online"]["hr@10"] == 0.5 and verdict["offline"]["hr@10"] == 0.75
    assert verdict["relative_difference"]["hr@10"] == pytest.approx(1 / 3) and not verdict["pass"]
    assert relative_difference(0.0, 0.0) == 0.0 and math.isinf(relative_difference(0.1, 0.0))
