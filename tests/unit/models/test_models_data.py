"""Loaders: MovieLens 100K files, simulator JSONL, malformed input."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from models_fixtures import ML100K

from models.data import load_movielens_100k
from models.errors import DataError
from models.simlog import load_simulator

GENRES = "|".join(["0"] * 18 + ["1"])


def write_ml(root: Path, data: str, items: str | None = None, users: str | None = None) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    (root / "u.data").write_text(data)
    (root / "u.item").write_text(
        items if items is not None else f"1|A (1995)|01-Jan-1995||url|{GENRES}\n2|B (1996)|||url|{GENRES}\n"
    )
    (root / "u.user").write_text(users if users is not None else "1|24|M|writer|1\n2|30|F|artist|2\n")
    return root


def test_movielens_tiny_loads_sorted_by_user_then_time(tmp_path: Path) -> None:
    root = write_ml(tmp_path, "1\t2\t5\t20\n1\t1\t3\t10\n2\t1\t4\t5\n")
    ds = load_movielens_100k(root)
    assert (ds.n_users, ds.n_items) == (2, 2)
    assert ds.interactions.user.tolist() == [0, 0, 1]
    assert ds.interactions.item.tolist() == [0, 1, 0]
    assert ds.interactions.ts.tolist() == [10, 20, 5]
    assert ds.content.category[:, -1].tolist() == [1.0, 1.0]
    assert ds.content.age_bucket[1] == 0  # unknown release date
    assert ds.user_feature_names[:2] == ("age", "gender_m")
    assert ds.user_features[0, :2].tolist() == pytest.approx([0.24, 1.0])


@pytest.mark.parametrize(
    ("data", "needle"),
    [
        ("1\t1\t5\n", "u.data:1: expected 4 tab-separated fields, got 3"),
        ("1\t1\t5\t10\n1\tx\t5\t11\n", "u.data:2: field 'item_id' is not an integer"),
        ("1\t1\t9\t10\n", "u.data:1: rating out of range"),
        ("1\t7\t5\t10\n", "unknown users [] or items ['7']"),
    ],
)
def test_malformed_ratings_name_file_and_line(tmp_path: Path, data: str, needle: str) -> None:
    with pytest.raises(DataError, match=None) as err:
        load_movielens_100k(write_ml(tmp_path, data))
    assert needle in str(err.value)


def test_malformed_item_and_user_lines(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"u\.item:1: genre flags must be 0 or 1"):
        load_movielens_100k(write_ml(tmp_path / "a", "1\t1\t5\t1\n", items=f"1|A|||url|{GENRES[:-1]}x\n"))
    with pytest.raises(DataError, match=r"u\.user:2: gender must be M or F"):
        load_movielens_100k(write_ml(tmp_path / "b", "1\t1\t5\t1\n", users="1|2|M|x|1\n2|3|Q|x|1\n"))
    with pytest.raises(DataError, match=r"u\.data: file not found"):
        load_movielens_100k(tmp_path / "nowhere")


@pytest.mark.skipif(not ML100K.is_dir(), reason="MovieLens 100K not present")
def test_real_movielens_100k_shape() -> None:
    ds = load_movielens_100k(ML100K)
    assert (ds.n_users, ds.n_items, len(ds.interactions)) == (943, 1682, 100_000)
    assert ds.content.category.shape == (1682, 19)
    assert np.all(np.diff(ds.interactions.user) >= 0)


def test_simulator_log_labels_clicks_and_purchases(tmp_path: Path) -> None:
    ev = tmp_path / "events.jsonl"
    cat = tmp_path / "catalog.jsonl"
    t = "2024-01-01T00:00:0{}Z"
    lines = [
        {
            "event_id": "e1",
            "type": "impression",
            "user_id": "u",
            "item_id": "a",
            "ts": t.format(0),
            "position": 0,
            "request_id": "r1",
        },
        {
            "event_id": "e2",
            "type": "impression",
            "user_id": "u",
            "item_id": "b",
            "ts": t.format(0),
            "position": 1,
            "request_id": "r1",
        },
        {"event_id": "e3", "type": "click", "user_id": "u", "item_id": "b", "ts": t.format(2), "request_id": "r1"},
        {
            "event_id": "e4",
            "type": "purchase",
            "user_id": "u",
            "item_id": "b",
            "ts": t.format(3),
            "price": 5.0,
            "request_id": "r1",
        },
    ]
    import json

    ev.write_text("\n".join(json.dumps(x) for x in lines) + "\n")
    rows = [
        {"item_id": i, "category": c, "brand": "z", "price": 3.0, "created_at": "2023-12-01T00:00:00Z"}
        for i, c in (("a", "x"), ("b", "y"))
    ]
    cat.write_text("".join(json.dumps(r) + "\n" for r in rows))
    log = load_simulator(ev, cat)
    assert log.impressions.clicked.tolist() == [0.0, 1.0]
    assert log.impressions.purchased.tolist() == [0.0, 1.0]
    assert log.impressions.position.tolist() == [0, 1]
    assert len(log.dataset.interactions) == 2  # the click and the purchase, not the impressions
    assert log.dataset.content.category_names == ("unknown", "x", "y")


def test_simulator_malformed_line_names_file_and_line(tmp_path: Path) -> None:
    ev = tmp_path / "events.jsonl"
    ev.write_text(
        '{"event_id": "e1", "type": "view", "user_id": "u", "item_id": "a", "ts": "2024-01-01T00:00:00Z"}'
        '\n\n{"event_id": "e2", "type": "teleport", "user_id": "u", "item_id": "a", "ts": "x"}\n'
    )
    (tmp_path / "catalog.jsonl").write_text("")
    with pytest.raises(DataError, match=r"events\.jsonl:3: invalid Event: type"):
        load_simulator(ev, tmp_path / "catalog.jsonl")


def test_simulator_generated_world_round_trips(sim_dir: Path) -> None:
    log = load_simulator(sim_dir / "events.jsonl", sim_dir / "catalog.jsonl")
    assert len(log.impressions) == 50 * 10 * 8
    assert 0.05 < float(log.impressions.clicked.mean()) < 0.8
    assert np.all(log.impressions.purchased <= log.impressions.clicked)
