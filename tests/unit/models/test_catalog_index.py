"""Re-indexing a version over a larger catalog: trained items keep their embeddings, new ones get the tower's."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from models.catalog_index import ItemContent, age_buckets, price_buckets, reindex_version, tower_inputs
from models.data import age_bucket, price_bucket
from models.pipeline import build_version
from state.registry import FileRegistry
from streams.bench.catalog import brand_vocabulary, extend_catalog, extra_content, parse_catalog


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str, Path]:
    from models.synthetic import generate, write_jsonl

    data = tmp_path_factory.mktemp("sim")
    write_jsonl(generate(5, n_users=40, n_items=30, requests_per_user=8), data / "events.jsonl", data / "catalog.jsonl")
    staging = tmp_path_factory.mktemp("staging")
    build_version("sim", data, staging, config="tiny")
    reg = FileRegistry(tmp_path_factory.mktemp("reg"))
    v = reg.publish(staging, split="sim/leave-last-out", metrics={"ndcg@10": 0.1}, data_window={}).version
    reg.promote(v)
    return reg.root, v, data / "catalog.jsonl"


def test_vectorised_buckets_match_the_scalar_ones() -> None:
    prices = np.array([0.0, 0.4, 1.0, 7.5, 99.0, 1e9, -1.0, np.nan])
    ages = np.array([0.0, 0.5, 3.0, 400.0, 1e8, -2.0, np.nan])
    assert price_buckets(prices).tolist() == [price_bucket(None if np.isnan(p) else p) for p in prices]
    assert age_buckets(ages).tolist() == [age_bucket(None if np.isnan(a) else a) for a in ages]


def test_reindexed_version_covers_the_catalog_and_keeps_trained_embeddings(registry: tuple[Path, str, Path]) -> None:
    root, base, catalog_path = registry
    reg = FileRegistry(root)
    old = reg.load(base)
    old_ids, old_vecs = old.index.stored()  # type: ignore[union-attr]
    lines = [ln for ln in catalog_path.read_bytes().splitlines() if ln.strip()]
    latest = parse_catalog(lines)
    now = max(u.created_at.timestamp() for u in latest.values()) + 3600
    extra = extend_catalog(1000, 500, n_categories=3, now=now, seed=3)
    built = reindex_version(
        root,
        base,
        extra.ids,
        extra_content(extra, now),
        brand_vocabulary([u.brand for u in latest.values()]),
        recall_k=20,
    )
    assert reg.champion() == built.version and built.items == len(old.item_ids) + 500
    new = reg.load(built.version)
    assert new.item_ids[: len(old.item_ids)] == old.item_ids and len(new.index) == built.items  # type: ignore[arg-type]
    ids, vecs = new.index.stored()  # type: ignore[union-attr]
    by_id = dict(zip(ids.tolist(), vecs, strict=True))
    # the trained items' vectors: id part and content exactly as the exported index had them
    want = dict(zip(old_ids.tolist(), old_vecs, strict=True))
    np.testing.assert_allclose(np.stack([by_id[i] for i in want]), np.stack(list(want.values())), atol=1e-5)
    # a new item: the item tower on its content alone
    feeds = tower_inputs(
        new.spec,
        ItemContent(
            np.array([-1]),
            [extra.category_names[extra.category[0]]],
            [extra.brand_names[extra.brand[0]]],
            extra.price[:1],
            (now - extra.created_at[:1]) / 86400.0,
        ),
        brand_vocabulary([u.brand for u in latest.values()]),
    )
    (emb,) = new.sessions["item_tower"].run(["item_embedding"], feeds)
    np.testing.assert_allclose(by_id[len(old.item_ids)], emb[0], atol=1e-5)
    assert 0.0 <= built.recall <= 1.0
    manifest = reg.get(built.version)
    assert manifest.data_window["catalog_items"] == built.items and manifest.data_window["reindexed_from"] == base
    # the session tower knows only the trained items: a long-tail item in a session is skipped, never indexed
    from state.features import new_user_state
    from state.session_tower import SessionTower

    state = new_user_state("u")
    state.last_n.extend([(1, 1, old.item_ids[0]), (2, 1, extra.ids[0])])
    seq, rows = SessionTower(new).sequences([state])
    assert rows == [0] and seq[0, -1] == 0 and (seq[0, :-1] == -1).all()
    assert SessionTower(new).embed([state])["u"].shape == (new.index.dim,)  # type: ignore[union-attr]
    assert json.loads((root / "versions" / built.version / new.spec.item_ids_file).read_text())[-1] == "i1499"  # type: ignore[operator]
