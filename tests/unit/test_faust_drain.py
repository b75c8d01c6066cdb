"""The cheaper fetch-loop hand-off keeps ``wait_first``'s race: deliver, unless suspended, stopped or crashed first."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import faust
import pytest

from streams.faust_drain import FastDrainConsumer, FastDrainTransport, waits_on


@pytest.fixture
async def consumer() -> AsyncIterator[Any]:
    app = faust.App("drain-test", broker="kafka://127.0.0.1:1", store="memory://", web_enabled=False)
    app.transport = FastDrainTransport(app.conf.broker_consumer, app)

    async def on_change(*_: object) -> None:
        return None

    c = app.transport.create_consumer(
        callback=on_change, on_partitions_revoked=on_change, on_partitions_assigned=on_change
    )
    assert isinstance(c, FastDrainConsumer)
    yield c
    if c._flags is not None:
        c._flags.cancel()


async def test_a_message_is_delivered_and_its_result_returned(consumer: Any) -> None:
    seen: list[int] = []

    async def deliver(n: int) -> int:
        seen.append(n)
        return n * 2

    for n in range(3):
        res = await consumer.wait_first(deliver(n), consumer.suspend_flow.wait())
        assert res.results == [n * 2] and not res.stopped
    assert seen == [0, 1, 2]
    assert consumer._flags is None  # none suspended: no task, no flag future were needed


async def test_a_blocked_delivery_is_cancelled_when_the_flow_is_suspended(consumer: Any) -> None:
    gate = asyncio.Event()
    cancelled = asyncio.Event()

    async def blocked() -> None:
        try:
            await gate.wait()
        except asyncio.CancelledError:
            cancelled.set()
            raise

    race = asyncio.ensure_future(consumer.wait_first(blocked(), consumer.suspend_flow.wait()))
    await asyncio.sleep(0.01)
    assert not race.done()
    consumer.suspend_flow.set()
    res = await asyncio.wait_for(race, 1.0)
    assert res.results == [] and cancelled.is_set()
    # while suspended, nothing is delivered; after the flag clears, delivery works again
    started: list[str] = []

    async def note() -> str:
        started.append("x")
        return "x"

    assert (await consumer.wait_first(note(), consumer.suspend_flow.wait())).stopped
    assert started == []
    consumer.suspend_flow.clear()
    assert (await consumer.wait_first(note(), consumer.suspend_flow.wait())).results == ["x"]


async def test_a_delivery_that_suspends_finishes_as_a_task(consumer: Any) -> None:
    gate = asyncio.Event()

    async def waits(n: int) -> int:
        await asyncio.sleep(0)
        await gate.wait()
        return n + 1

    race = asyncio.ensure_future(consumer.wait_first(waits(41), consumer.suspend_flow.wait()))
    await asyncio.sleep(0.01)
    assert not race.done() and consumer._flags is not None  # suspended: now it races the flags
    gate.set()
    assert (await asyncio.wait_for(race, 1.0)).results == [42]


async def test_the_delivery_exception_propagates(consumer: Any) -> None:
    async def boom() -> None:
        raise RuntimeError("decode failed")

    with pytest.raises(RuntimeError, match="decode failed"):
        await consumer.wait_first(boom(), consumer.suspend_flow.wait())


async def test_other_calls_take_the_original_path(consumer: Any) -> None:
    async def quick() -> str:
        return "q"

    other = asyncio.Event()
    res = await consumer.wait_first(quick(), other.wait(), timeout=1.0)
    assert res.results[0] == "q"
    assert consumer._flags is None  # the shared flag future was never needed


def test_waits_on_recognises_only_that_events_wait() -> None:
    a, b = asyncio.Event(), asyncio.Event()
    coro = a.wait()
    try:
        assert not waits_on(coro, b)
    finally:
        coro.close()
