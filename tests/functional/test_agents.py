"""The agents inside Faust's test context: no broker, an in-memory store, the real agent code."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import orjson
import pytest

from agents.events import feed
from agents.runtime import Runtime
from state.memory_store import MemoryFeatureStore
from streams.app import create_app
from streams.clock import FakeClock
from streams.errors import ConfigError
from streams.records import DeadLetter, Impression, RecommendResponse
from streams.settings import load_settings
from tests.functional.captured import capture_sends

NOW = datetime(2026, 11, 24, 12, 0, tzinfo=UTC)


def event(i: int, user: str, item: str, kind: str = "view") -> bytes:
    ts = (NOW - timedelta(seconds=60 - i)).isoformat()
    return orjson.dumps({"event_id": f"{user}-{i}", "type": kind, "user_id": user, "item_id": item, "ts": ts})


@pytest.fixture
async def runtime() -> AsyncIterator[Runtime]:
    settings = load_settings(
        worker={"app_id": "functional", "store": "memory", "batch_within_s": 0.01},
        serving={"request_consumer": "faust"},  # the serving agent, so Faust's test context can feed it
    )
    clock = FakeClock(NOW.timestamp())
    rt = Runtime(settings=settings, store=MemoryFeatureStore(clock=clock), clock=clock)
    yield rt


async def test_events_update_the_table_and_the_store(runtime: Runtime, monkeypatch: pytest.MonkeyPatch) -> None:
    sent = capture_sends(monkeypatch)
    app = create_app(runtime.settings, runtime)
    app.finalize()
    values = [event(i, "alice", item) for i, item in enumerate(["i1", "i2", "i1"])]
    await feed(app, [*values, b"{broken"], key=b"alice")
    state = await runtime.store.read_user("alice")
    assert state is not None and state.total == 3
    top = await runtime.store.top_popular(5, runtime.clock.now())
    assert [item for item, _ in top] == ["i1", "i2"]
    letters = [DeadLetter.model_validate_json(v) for t, v in sent if t == runtime.topics.dead_letters]
    assert [(d.reason, d.topic) for d in letters] == [("not_json", runtime.topics.events)]


async def test_serving_answers_with_popular_unseen_items(runtime: Runtime, monkeypatch: pytest.MonkeyPatch) -> None:
    runtime.popular = [("i1", 3.0), ("i2", 2.0), ("i3", 1.0)]
    app = create_app(runtime.settings, runtime)
    app.finalize()
    serve = app.agents["serve"]
    sent = capture_sends(monkeypatch)
    async with serve.test_context() as agent:
        await agent.put(orjson.dumps({"correlation_id": "c1", "user_id": "bob", "k": 2}), key=b"bob")
    assert [name for name, _ in sent] == [runtime.topics.rec_responses, runtime.topics.impressions]
    resp = RecommendResponse.model_validate_json(sent[0][1])
    logged = Impression.model_validate_json(sent[1][1])
    assert logged.correlation_id == "c1" and [it.item_id for it in logged.items] == [it.item_id for it in resp.items]
    assert len(logged.propensities) == len(logged.items)
    assert resp.correlation_id == "c1" and [it.item_id for it in resp.items] == ["i1", "i2"]


async def test_a_request_that_waited_past_its_deadline_is_shed_with_a_typed_error(
    runtime: Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    runtime.popular = [("i1", 3.0), ("i2", 2.0)]
    app = create_app(runtime.settings, runtime)
    app.finalize()
    sent = capture_sends(monkeypatch)
    late = {"correlation_id": "late", "user_id": "bob", "k": 2, "deadline_ms": 250.0}
    fresh = {**late, "correlation_id": "fresh"}
    async with app.agents["serve"].test_context() as agent:
        await agent.put(orjson.dumps({**late, "sent_at": (NOW - timedelta(seconds=2)).isoformat()}), key=b"bob")
        await agent.put(orjson.dumps({**fresh, "sent_at": (NOW - timedelta(seconds=0.1)).isoformat()}), key=b"bob")
    replies = [RecommendResponse.model_validate_json(v) for t, v in sent if t == runtime.topics.rec_responses]
    assert [r.correlation_id for r in replies] == ["late", "fresh"]
    assert replies[0].error is not None and replies[0].error.code.value == "deadline_exceeded" and not replies[0].items
    assert replies[1].error is None and [it.item_id for it in replies[1].items] == ["i1", "i2"]
    logged = [Impression.model_validate_json(v).correlation_id for t, v in sent if t == runtime.topics.impressions]
    assert logged == ["fresh"]  # the shed request ran no funnel and served nothing
    labels = {"agent": runtime.settings.worker.app_id}
    sample = runtime.registry.get_sample_value
    assert sample("streamrec_request_wait_seconds_count", labels) == 2.0  # the wait of both, the shed one included
    assert sample("streamrec_request_wait_seconds_sum", labels) == pytest.approx(2.1)
    assert sample("streamrec_errors_total", {**labels, "code": "deadline_exceeded"}) == 1.0


def test_experiment_arms_are_assigned_per_user_and_recorded_on_responses(monkeypatch: pytest.MonkeyPatch) -> None:
    arms = [{"name": "control", "share": 0.5}, {"name": "clicks", "share": 0.5, "value_formula": "click"}]
    settings = load_settings(
        worker={"app_id": "functional-ab", "store": "memory"},
        experiments={"active": [{"name": "formula", "variants": arms}]},
    )
    rt = Runtime(settings=settings, store=MemoryFeatureStore())
    labels = {rt.funnel_for(f"u{i}")[1] for i in range(200)}
    assert labels == {"formula:control", "formula:clicks"}
    assert rt.funnel_for("u7") == rt.funnel_for("u7")  # deterministic per user
    assert rt.arm_funnels["clicks"].config.value.formula == "click"
    assert rt.arm_funnels["control"].config.value.formula == settings.serving.value_formula


def test_arms_pinning_a_version_that_is_not_loaded_are_refused_at_start_up(tmp_path: Path) -> None:
    arms = [{"name": "a", "share": 0.5}, {"name": "b", "share": 0.5, "model_version": "v0002"}]
    settings = load_settings(
        worker={"store": "memory"},
        experiments={"active": [{"name": "m", "variants": arms}]},
        models={"registry_dir": tmp_path},
    )
    with pytest.raises(ConfigError, match=r"pin model versions \['v0002'\] that are not loaded"):
        Runtime(settings=settings, store=MemoryFeatureStore())
    with pytest.raises(ConfigError, match="arm pins model v0002, which cannot be loaded"):
        Runtime.build(settings)


async def test_clicks_on_a_served_list_update_the_thompson_posteriors(
    runtime: Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    runtime.popular = [("i1", 3.0), ("i2", 2.0), ("i3", 1.0)]
    app = create_app(runtime.settings, runtime)
    app.finalize()
    capture_sends(monkeypatch)
    request = {"correlation_id": "c1", "user_id": "bob", "k": 2, "context": {"exploration": "thompson"}}
    async with app.agents["serve"].test_context() as agent:
        await agent.put(orjson.dumps(request), key=b"bob")
    assert runtime.posteriors.impressions == {"fallback": 2} and runtime.posteriors.clicks == {}
    click = orjson.loads(event(1, "bob", "i2", "click"))
    clicks = [{**click, "request_id": "c1"}, {**click, "event_id": "bob-9", "request_id": "other"}]
    await feed(app, [orjson.dumps(c) for c in clicks], key=b"bob")
    assert runtime.posteriors.clicks == {"fallback": 1}
    assert runtime.posteriors.params(["fallback"]) == ([2.0], [2.0])
