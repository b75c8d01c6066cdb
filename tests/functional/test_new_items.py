"""A new item on the items topic is embedded by the item tower and retrievable by ANN on every worker.

Two runtimes share one in-memory store (as two workers share Redis), each with its own copy of a
tiny trained version from a real registry; only one of them consumes the item.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import orjson
import pytest

from agents.ann_recall import SampledAnnSource
from agents.funnel.candidates import RetrievalContext
from agents.funnel.sources import AnnSource
from agents.new_items import CLOCK_MARGIN_S, sync_new_items
from agents.runtime import Runtime
from models.data import age_bucket, price_bucket
from state.catalog_table import CatalogTable
from state.items import ItemRecord
from state.memory_store import MemoryFeatureStore
from state.pools import CATALOG_LOG, catalog_log_update
from state.registry import FileRegistry
from state.store import WriteBatch
from streams.app import create_app
from streams.clock import FakeClock
from streams.settings import load_settings

NOW = datetime(2026, 11, 24, 12, 0, tzinfo=UTC)


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory) -> tuple[FileRegistry, str]:
    from models.pipeline import build_version
    from models.synthetic import generate, write_jsonl

    data = tmp_path_factory.mktemp("sim")
    write_jsonl(generate(5, n_users=40, n_items=30, requests_per_user=8), data / "events.jsonl", data / "catalog.jsonl")
    staging = tmp_path_factory.mktemp("staging")
    build_version("sim", data, staging, config="tiny")
    reg = FileRegistry(Path(tmp_path_factory.mktemp("registry")))
    version = reg.publish(staging, split="sim", metrics={"ndcg@10": 0.1}, data_window={}).version
    return reg, version


@pytest.fixture
async def workers(registry: tuple[FileRegistry, str]) -> AsyncIterator[tuple[Runtime, Runtime]]:
    reg, version = registry
    clock = FakeClock(NOW.timestamp())
    store = MemoryFeatureStore(clock=clock)
    out = []
    for name in ("a", "b"):
        settings = load_settings(worker={"app_id": f"functional-new-{name}", "store": "memory", "batch_within_s": 0.01})
        rt = Runtime(settings=settings, store=store, clock=clock)
        rt.use_model(reg.load(version))  # each worker loads its own copy of the index
        out.append(rt)
    yield out[0], out[1]


def item_json(item_id: str, category: str, brand: str = "b2", price: float = 40.0) -> bytes:
    body = {"item_id": item_id, "category": category, "brand": brand, "price": price, "created_at": NOW.isoformat()}
    return orjson.dumps(body)


async def consume_items(rt: Runtime, values: list[bytes]) -> None:
    app = create_app(rt.settings, rt)
    app.finalize()
    async with app.agents["items"].test_context() as agent:
        for v in values:
            await agent.put(v, key=orjson.loads(v)["item_id"].encode())


def ann(rt: Runtime) -> AnnSource:
    # with recall sampling on, the ANN source is wrapped (agents.ann_recall.SampledAnnSource)
    unwrapped = [s.inner if isinstance(s, SampledAnnSource) else s for s in rt.funnel.sources]
    (source,) = [s for s in unwrapped if isinstance(s, AnnSource)]
    return source


async def test_a_new_item_is_retrievable_by_ann_on_every_worker(workers: tuple[Runtime, Runtime]) -> None:
    a, b = workers
    assert a.live_index is not None and a.item_tower is not None and b.live_index is not None
    known = len(b.live_index)
    assert "new-1" not in b.live_index
    await consume_items(a, [item_json("new-1", "c3")])  # only worker a consumes the items partition
    started = time.perf_counter()
    assert await sync_new_items(a) == 1 and await sync_new_items(b) == 1
    assert time.perf_counter() - started < 1.0  # plus at most one poll interval (1 s) on a real worker
    assert len(b.live_index) == known + 1 and b.live_index.item_ids[-1] == "new-1"
    (rec,) = await b.store.read_items(["new-1"])
    assert rec is not None
    vec = b.item_tower.embed([rec], b.clock.now()) if b.item_tower is not None else None
    assert vec is not None and vec.shape == (1, b.live_index.index.dim)
    for rt in (a, b):  # through the serving funnel's ANN source, scored with exactly the tower's vector
        got = dict(await ann(rt).fetch(RetrievalContext("u1", None, rt.clock.now(), user_vector=vec[0])))
        assert len(got) == known + 1
        assert got["new-1"] == pytest.approx(float(vec[0] @ vec[0]), rel=1e-4)
    assert await sync_new_items(b) == 0  # nothing new: nothing re-added


class CountingCatalog(CatalogTable):
    """A catalog that records which ids are looked up row by row."""

    def __init__(self) -> None:
        super().__init__()
        self.asked: list[list[str]] = []

    def rows(self, item_ids: Sequence[str]) -> npt.NDArray[np.int64]:
        self.asked.append(list(item_ids))
        return super().rows(item_ids)


async def test_the_catalog_agent_tells_the_funnel_where_indexed_items_sit(registry: tuple[FileRegistry, str]) -> None:
    reg, version = registry
    clock = FakeClock(NOW.timestamp())
    settings = load_settings(worker={"app_id": "functional-rows", "store": "memory", "batch_within_s": 0.01})
    catalog = CountingCatalog()
    rt = Runtime(settings=settings, store=MemoryFeatureStore(clock=clock), clock=clock, catalog=catalog)
    rt.use_model(reg.load(version))
    assert rt.live_index is not None
    space = rt.live_index.item_ids
    ids = [*space[:6], "x"]
    await consume_items(rt, [item_json(i, "c1", price=10.0 + j) for j, i in enumerate(ids)])
    catalog.asked.clear()
    rows = rt.funnel.rows.catalog_rows(ids, np.array([*range(6), -1]), space)
    assert rows.tolist() == CatalogTable.rows(catalog, ids).tolist() and min(rows.tolist()) >= 0
    assert catalog.asked == [["x"]]  # the indexed items were learnt as they were stored; "x" is looked up
    assert catalog.columns_at(ids, rows).price.tolist() == [10.0 + j for j in range(7)]


async def test_the_embedding_is_the_item_towers_content_path(workers: tuple[Runtime, Runtime]) -> None:
    a, _ = workers
    await consume_items(a, [item_json("new-c3", "c3"), item_json("new-c0", "c0"), item_json("new-x", "toys")])
    recs = [r for r in await a.store.read_items(["new-c3", "new-c0", "new-x"]) if r is not None]
    tower = a.item_tower
    assert tower is not None and a.model is not None and len(recs) == 3
    feeds = tower.inputs(recs, a.clock.now())
    columns = a.model.spec.graphs["item_tower"].inputs[1].columns or []
    assert [columns[int(np.argmax(row))] for row in feeds["item_category"]] == ["c3", "c0", "unknown"]
    assert feeds["item_idx"].tolist() == [-1, -1, -1]
    assert feeds["item_brand"].tolist() == [3, 3, 3]  # "b2" is the third brand of the training vocabulary
    assert feeds["item_price_bucket"].tolist() == [price_bucket(40.0)] * 3
    assert feeds["item_age_bucket"].tolist() == [age_bucket(0.0)] * 3
    (direct,) = a.model.sessions["item_tower"].run(["item_embedding"], feeds)
    assert np.allclose(tower.embed(recs, a.clock.now()), direct)
    assert not np.allclose(direct[0], direct[1])  # the category moves the embedding


async def test_a_swapped_in_version_indexes_the_logged_items_again(
    workers: tuple[Runtime, Runtime], registry: tuple[FileRegistry, str]
) -> None:
    a, b = workers
    await consume_items(a, [item_json(f"new-{k}", f"c{k % 5}") for k in range(3)])
    await sync_new_items(b)
    reg, version = registry
    b.use_model(reg.load(version))  # hot swap: the version's own index, without the new items
    assert b.live_index is not None and "new-0" not in b.live_index
    assert await sync_new_items(b) == 3
    assert {"new-0", "new-1", "new-2"} <= set(b.live_index.item_ids)
    logged = dict(await b.store.read_pool(CATALOG_LOG, 10))
    assert logged == dict.fromkeys(["new-0", "new-1", "new-2"], NOW.timestamp())  # item -> when it was written


async def test_a_version_without_a_content_item_tower_indexes_nothing(
    workers: tuple[Runtime, Runtime], registry: tuple[FileRegistry, str]
) -> None:
    a, b = workers
    reg, version = registry
    loaded = reg.load(version)
    b.use_model(replace(loaded, sessions={k: v for k, v in loaded.sessions.items() if k != "item_tower"}))
    assert b.live_index is not None and b.item_tower is None
    await consume_items(a, [item_json("new-9", "c1")])
    assert await sync_new_items(b) == 0 and "new-9" not in b.live_index


async def test_after_a_bulk_load_later_polls_read_nothing_already_indexed(workers: tuple[Runtime, Runtime]) -> None:
    a, b = workers
    await consume_items(a, [item_json(f"bulk-{k}", f"c{k % 5}") for k in range(40)])
    assert await sync_new_items(b) == 40
    assert b.live_index is not None and b.live_index.cursor == b.clock.now()
    since = b.live_index.cursor - CLOCK_MARGIN_S
    assert len(await b.store.read_pool_since(CATALOG_LOG, since, 1000)) == 40  # within the margin
    assert isinstance(b.clock, FakeClock)
    b.clock.advance(CLOCK_MARGIN_S + 1.0)
    assert await sync_new_items(b) == 0
    since = b.live_index.cursor - CLOCK_MARGIN_S
    assert await b.store.read_pool_since(CATALOG_LOG, since, 1000) == []  # the load is behind it


async def test_an_entry_older_than_the_cursor_is_indexed_at_the_next_look_back(
    workers: tuple[Runtime, Runtime],
) -> None:
    a, b = workers
    await consume_items(a, [item_json("first", "c1")])
    assert await sync_new_items(b) == 1  # the first poll looks back over the margin
    assert isinstance(b.clock, FakeClock) and b.live_index is not None
    b.clock.advance(1.0)
    late = catalog_log_update(["late"], b.clock.now() - 2.0, b.pools)  # a writer whose clock is 2 s behind
    record = ItemRecord("late", "c2", "b2", 40.0, created_at=NOW.timestamp())
    await b.store.write_batch(WriteBatch(source="test", offsets={}, items={"late": record}, pools=[late]))
    assert await sync_new_items(b) == 0  # above the cursor only: a poll a second later does not see it
    b.clock.advance(CLOCK_MARGIN_S)
    assert await sync_new_items(b) == 1 and "late" in b.live_index  # the next look-back does
    b.clock.advance(1.0)
    assert await sync_new_items(b) == 0


async def test_the_events_agent_keeps_the_session_vectors_the_funnel_then_reuses(
    workers: tuple[Runtime, Runtime], monkeypatch: pytest.MonkeyPatch
) -> None:
    from agents.events import feed
    from state.vectors import decode_vector, encode_vector

    a, _ = workers
    assert a.model is not None and a.tower is not None
    items = list(a.model.item_ids[:3])
    ts = NOW.isoformat()
    values = [
        orjson.dumps({"event_id": f"carol-{k}", "type": "view", "user_id": "carol", "item_id": i, "ts": ts})
        for k, i in enumerate(items)
    ]
    app = create_app(a.settings, a)
    app.finalize()
    monkeypatch.setattr("faust.topics.Topic.send", _swallow)
    await feed(app, values, key=b"carol")
    state = a.user_state("carol")
    assert state is not None
    kept = a.session_vectors.get(a.tower.version, state)
    stored = await a.store.read_user_vector("carol")
    assert kept is not None and stored is not None
    assert np.array_equal(decode_vector(encode_vector(kept)), stored)  # what the store holds, before rounding
    runs: list[int] = []
    session = a.model.sessions["user_tower"]
    embed = a.funnel.embed
    assert embed is not None
    monkeypatch.setattr(type(session), "run", _counting(type(session).run, runs), raising=False)
    vec = embed(state)
    assert runs == [] and vec is not None and np.array_equal(vec, stored)  # reused: the tower did not run


async def _swallow(*args: object, **kwargs: object) -> None:
    return None


def _counting(run: Any, runs: list[int]) -> Any:
    def counted(self: object, *args: object, **kwargs: object) -> object:
        runs.append(1)
        return run(self, *args, **kwargs)

    return counted
