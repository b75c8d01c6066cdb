"""The model-updates control topic: its record, the worker's reaction to it, the listener, `models promote`."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry
from typer.testing import CliRunner

from agents.models import Follower, UpdatesListener, handle_update
from agents.runtime import Runtime
from state.memory_store import MemoryFeatureStore
from state.registry import FileRegistry
from streams.clock import FakeClock
from streams.codec import encode
from streams.errors import DecodeError, InfraError
from streams.model_updates import decode_update, model_update
from streams.records import ModelUpdate
from streams.settings import load_settings

T0 = 1_790_000_000.0


def runtime(registry: FileRegistry) -> Runtime:
    settings = load_settings(worker={"store": "memory"}, models={"registry_dir": registry.root})
    clock = FakeClock(T0)
    return Runtime(settings=settings, store=MemoryFeatureStore(clock=clock), clock=clock, registry=CollectorRegistry())


def loads(rt: Runtime, outcome: str) -> float:
    value = rt.registry.get_sample_value("streamrec_model_loads_total", {"agent": "streamrec", "outcome": outcome})
    return value or 0.0


def test_model_update_round_trips_and_bad_values_are_rejected() -> None:
    update = model_update("v0007", "retire", T0)
    assert decode_update(encode(update)) == update
    assert encode(update).startswith(b'{"schema_version":1,"version":"v0007","action":"retire","ts":"2026-')
    with pytest.raises(DecodeError, match="action"):
        decode_update(b'{"version":"v1","action":"demote","ts":"2026-01-01T00:00:00Z"}')
    with pytest.raises(DecodeError, match="ts"):
        decode_update(b'{"version":"v1","action":"promote","ts":"2026-01-01T00:00:00"}')  # naive time
    with pytest.raises(DecodeError, match="not_json"):
        decode_update(b"promote v1")


def test_a_promote_retries_a_recent_failure_at_once_a_retire_does_not(tmp_path: Path) -> None:
    follower = Follower(FileRegistry(tmp_path))
    follower.failed = {"v2": T0}
    follower.on_update(model_update("v2", "retire", T0))
    assert follower.failed == {"v2": T0}
    follower.on_update(model_update("v2", "promote", T0))
    assert follower.failed == {}


async def test_updates_swap_the_champion_in_keep_the_old_one_on_failure_and_retire(
    tiny_registry: FileRegistry,
) -> None:
    rt = runtime(tiny_registry)
    follower = Follower(tiny_registry)
    tiny_registry.promote("v0001")
    assert await handle_update(rt, follower, model_update("v0001", "promote", T0)) == "v0001"
    assert rt.model_version == "v0001" and rt.funnel.ranker is not None
    tiny_registry.promote("v0002")
    assert await handle_update(rt, follower, model_update("v0002", "promote", T0)) == "v0002"
    assert rt.model_version == "v0002"
    # A broken version: the registry names it champion, loading fails, v0002 keeps serving.
    tiny_registry.promote("v0001", force=True)
    ranker = tiny_registry.root / "versions" / "v0001" / "ranker.onnx"
    ranker.write_bytes(ranker.read_bytes()[:-5] + b"xxxxx")
    assert await handle_update(rt, follower, model_update("v0001", "promote", T0)) is None
    assert rt.model_version == "v0002" and "v0001" in follower.failed
    # The poll would wait RETRY_FAILED_S before retrying; an explicit promote retries now (and fails again).
    assert await handle_update(rt, follower, model_update("v0001", "promote", T0)) is None
    assert (loads(rt, "ok"), loads(rt, "failed")) == (2.0, 2.0)
    tiny_registry.promote("v0002", force=True)
    tiny_registry.retire("v0002")
    assert await handle_update(rt, follower, model_update("v0002", "retire", T0)) is None
    assert rt.model is None and rt.model_version == "none" and rt.funnel.ranker is None


async def test_the_listener_handles_every_update_and_outlives_a_broken_source(tmp_path: Path) -> None:
    rt = runtime(FileRegistry(tmp_path))
    seen: list[ModelUpdate] = []
    calls = 0

    async def source() -> AsyncIterator[ModelUpdate]:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise InfraError("broker gone")
        for v in ("v1", "v2"):
            update = model_update(v, "promote", T0)
            seen.append(update)
            yield update
        await asyncio.Event().wait()  # the topic stays open

    listener = UpdatesListener(rt, Follower(FileRegistry(tmp_path)), source, retry_s=0.01)
    await listener.start()
    try:
        for _ in range(200):
            if listener.handled == 2:
                break
            await asyncio.sleep(0.01)
    finally:
        await listener.stop()
    assert calls == 2 and listener.handled == 2 and [u.version for u in seen] == ["v1", "v2"]


def test_promote_with_kafka_unreachable_keeps_the_registry_change_and_exits_2(
    tiny_registry: FileRegistry, monkeypatch: pytest.MonkeyPatch
) -> None:
    import typer

    from streams.cli_models import register

    monkeypatch.setenv("STREAMREC_KAFKA__BOOTSTRAP_SERVERS", "127.0.0.1:9")  # discard port: nothing listens
    monkeypatch.setenv("STREAMREC_MODELS__UPDATES_TIMEOUT_S", "3")
    app = typer.Typer()
    register(app)
    result = CliRunner().invoke(app, ["models", "promote", "v0002", "--registry", str(tiny_registry.root)])
    assert result.exit_code == 2, result.output
    assert tiny_registry.champion() == "v0002"
    assert "champion is now v0002" in result.output and "registry change stands" in result.output
    refused = CliRunner().invoke(app, ["models", "retire", "v0001", "--registry", str(tiny_registry.root)])
    assert refused.exit_code == 1 and "not the champion" in refused.output
    assert tiny_registry.champion() == "v0002"
