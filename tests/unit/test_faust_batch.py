"""Batch topics: buffering, Faust's fetch backpressure, rebalance clearing, generations, conductor routing."""

from __future__ import annotations

import asyncio
from typing import Any

import faust
from faust.types import TP, Message

from streams.faust_batch import BatchBuffer, BatchConductor, BatchTopic, buffer_for, current
from streams.faust_drain import FastDrainTransport

TP0, TP1 = TP("events", 0), TP("events", 1)


def msg(offset: int, tp: TP = TP0, generation: int = 1) -> Message:
    return Message(tp.topic, tp.partition, offset, 0.0, 0, [], b"k", b"v", None, tp=tp, generation_id=generation)


def recording_buffer(high_water: int) -> tuple[BatchBuffer, list[tuple[str, TP]]]:
    calls: list[tuple[str, TP]] = []
    buffer = BatchBuffer(
        high_water, pause=lambda tp: calls.append(("pause", tp)), resume=lambda tp: calls.append(("resume", tp))
    )
    return buffer, calls


async def test_a_take_returns_the_oldest_messages_in_order() -> None:
    buffer, _ = recording_buffer(100)
    for o in range(5):
        buffer.put(msg(o), TP0)
    assert [m.offset for m in await buffer.take(3, linger_s=0.0)] == [0, 1, 2]
    assert [m.offset for m in await buffer.take(3, linger_s=0.0)] == [3, 4]
    assert len(buffer) == 0


async def test_a_take_waits_for_a_first_message_then_lingers_for_more() -> None:
    buffer, _ = recording_buffer(100)
    taking = asyncio.ensure_future(buffer.take(10, linger_s=0.05))
    await asyncio.sleep(0.01)
    assert not taking.done()
    buffer.put(msg(0), TP0)
    await asyncio.sleep(0.01)
    buffer.put(msg(1), TP0)  # arrives while the take lingers: same batch
    assert [m.offset for m in await asyncio.wait_for(taking, 1.0)] == [0, 1]


async def test_full_buffers_pause_the_partitions_that_filled_them_until_half_drained() -> None:
    buffer, calls = recording_buffer(4)
    for o in range(3):
        buffer.put(msg(o), TP0)
    assert calls == []
    buffer.put(msg(3), TP0)
    buffer.put(msg(0, TP1), TP1)
    buffer.put(msg(4), TP0)  # already paused: not again
    assert calls == [("pause", TP0), ("pause", TP1)]
    buffer.take_now(2)  # 4 left: not below half
    assert len(calls) == 2
    buffer.take_now(3)  # 1 left
    assert sorted(calls[2:], key=lambda c: c[1].partition) == [("resume", TP0), ("resume", TP1)]


def test_clearing_drops_everything_and_resumes_paused_partitions() -> None:
    buffer, calls = recording_buffer(2)
    buffer.put(msg(0), TP0)
    buffer.put(msg(1), TP0)
    buffer.clear()
    assert len(buffer) == 0 and buffer.take_now(10) == []
    assert calls == [("pause", TP0), ("resume", TP0)]


def test_messages_of_an_older_generation_are_left_out() -> None:
    got = current([msg(0, generation=1), msg(1, generation=2), msg(2, generation=2)], generation_id=2)
    assert [m.offset for m in got] == [1, 2]


def make_app() -> faust.App:
    app = faust.App("batch-test", broker="kafka://127.0.0.1:1", store="memory://", web_enabled=False)
    app.transport = FastDrainTransport(app.conf.broker_consumer, app)
    return app


def test_the_transport_builds_the_batch_conductor() -> None:
    app = make_app()
    assert isinstance(app.topics, BatchConductor)


async def test_a_rebalance_ending_clears_the_buffer() -> None:
    app = make_app()
    buffer = buffer_for(app, high_water=100)
    buffer.put(msg(0), TP0)
    app.flow_control.resume()  # what Faust does when partitions are assigned again
    assert len(buffer) == 0


async def test_the_conductor_hands_batch_topic_messages_to_the_buffer_tracked_for_commit() -> None:
    app = make_app()
    buffer = buffer_for(app, high_water=100)
    topic = BatchTopic(app, "events", buffer)
    handler: Any = app.topics._build_handler(TP0, {topic})  # type: ignore[attr-defined]
    message = msg(7)
    delivering = asyncio.ensure_future(handler(message))
    await asyncio.sleep(0.01)
    assert not delivering.done() and len(buffer) == 0  # flow suspended (before assignment/recovery): it waits
    app.flow_control.resume()
    await asyncio.wait_for(delivering, 1.0)
    assert buffer.take_now(10) == [message]
    assert message.tracked and message in app.consumer.unacked
    message.ack(app.consumer)
    assert message.acked
