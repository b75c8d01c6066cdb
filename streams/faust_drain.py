"""Faust's Kafka transport with a cheaper per-message hand-off from the fetch loop to the streams.

For every fetched message, Faust's consumer runs ``wait_first(callback(message), suspend_flow.wait())``:
deliver the message to the streams unless a rebalance (``suspend_flow``), a stop or a crash comes
first.  ``Service.wait_first`` does this with four fresh tasks and an ``asyncio.wait`` per message,
about a third of the whole per-message cost of a worker.  :class:`FastDrainConsumer` keeps the same
race with none where it can: the delivery is first run synchronously up to its first suspension, and
almost always (no rebalance, no full queue) it finishes there, so there was nothing to race.  Only a
delivery that suspends becomes a task, racing one shared future that completes when any of those flags
is set (recreated only after it has fired).  Winner, cancellation and exception rules are unchanged: the
delivery is cancelled if a flag comes first, its exception propagates, and any other call to
``wait_first`` takes the original path.

The transport also sets the consumer's ``fetch_max_wait_ms``, which Faust hard-codes to 1,500 ms.
aiokafka keeps one fetch request in flight per broker and leaves out of it the partitions that still
have buffered records.  Under steady load the request in flight then often covers only partitions
with no new data (other topics, or partitions just drained), and the broker holds it for the full
wait while the busy partitions, drained meanwhile, wait for it to return: 1.5 s stalls at 5,000
events/s that no amount of CPU removes (docs/ingest-performance.md).
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine, Generator, Mapping
from typing import Any

from faust.transport.drivers import aiokafka as faust_aiokafka
from faust.types import TP
from mode.services import WaitResults

from streams.faust_batch import BatchConductor


def waits_on(coro: object, event: object) -> bool:
    """True when ``coro`` is an unstarted ``event.wait()`` coroutine."""
    frame = getattr(coro, "cr_frame", None)
    return (
        getattr(coro, "__qualname__", None) == "Event.wait"
        and frame is not None
        and frame.f_locals.get("self") is event
    )


class FastDrainConsumer(faust_aiokafka.Consumer):
    """The aiokafka-driver consumer whose per-message delivery race costs two tasks instead of four."""

    _flags: asyncio.Future[Any] | None = None

    async def wait_first(self, *coros: Any, timeout: Any = None) -> WaitResults:  # noqa: ASYNC109 - mode's signature
        if timeout is None and len(coros) == 2 and waits_on(coros[1], self.suspend_flow):
            coros[1].close()  # never started: the shared flag future stands in for it
            return await self._deliver(coros[0])
        return await super().wait_first(*coros, timeout=timeout)

    def _flag_future(self) -> asyncio.Future[Any]:
        """Completes when ``suspend_flow`` is set or the consumer stops or crashes (the original race's rivals)."""
        fut = self._flags
        if fut is None or fut.done():
            fut = self._flags = asyncio.ensure_future(super().wait_first(self.suspend_flow.wait()))
        return fut

    async def _deliver(self, coro: Coroutine[Any, Any, Any]) -> WaitResults:
        if self.suspend_flow.is_set() or self._stopped.is_set() or self._crashed.is_set():
            coro.close()  # a rival has already won: the delivery never starts
            return WaitResults([], [], True)
        try:
            suspended_on = coro.send(None)
        except StopIteration as finished:  # delivered without suspending: no flag could have come first
            return WaitResults([coro], [finished.value], False)
        task = asyncio.ensure_future(_resume(coro, suspended_on))
        try:
            done, _ = await asyncio.wait((task, self._flag_future()), return_when=asyncio.FIRST_COMPLETED)
        finally:
            if not task.done():
                task.cancel()
        if task in done:
            return WaitResults([coro], [task.result()], False)
        return WaitResults([], [], True)

    def _new_consumer_thread(self) -> TunedConsumerThread:
        return TunedConsumerThread(self, loop=self.loop, beacon=self.beacon)

    async def on_stop(self) -> None:
        await super().on_stop()
        if self._flags is not None and not self._flags.done():
            self._flags.cancel()


class _Resumed:
    """Awaitable continuing a coroutine that has already yielded ``first`` (to the awaiting task's loop)."""

    def __init__(self, coro: Coroutine[Any, Any, Any], first: Any) -> None:
        self.coro, self.first = coro, first

    def __await__(self) -> Generator[Any, Any, Any]:
        coro, yielded = self.coro, self.first
        while True:
            try:
                sent = yield yielded
            except BaseException as exc:  # noqa: BLE001 - thrown in by the task (cancellation): hand it on
                try:
                    yielded = coro.throw(exc)
                except StopIteration as finished:
                    return finished.value
            else:
                try:
                    yielded = coro.send(sent)
                except StopIteration as finished:
                    return finished.value


async def _resume(coro: Coroutine[Any, Any, Any], first: Any) -> Any:
    return await _Resumed(coro, first)


def uncommitted(committed: Mapping[Any, int | None]) -> list[Any]:
    """The partitions aiokafka's ``seek_to_committed`` leaves where they are (no offset, or 0, committed).

    >>> uncommitted({"a": None, "b": 0, "c": 12})
    ['a', 'b']
    """
    return [tp for tp, offset in committed.items() if not offset or offset <= 0]


class TunedConsumerThread(faust_aiokafka.AIOKafkaConsumerThread):
    """Faust's consumer thread: the transport's fetch wait, and a seek to committed that resets the rest.

    Faust seeks every partition to its committed offset after a rebalance's recovery, and whenever the
    fetch loop got records while the flow was stopped (it discards them).  aiokafka's
    ``seek_to_committed`` only moves partitions whose committed offset is above 0, so a partition
    nobody has committed yet (a worker taking over one its dead owner never committed) stays where
    the discarded fetch left it, and the records before that are never delivered: the survivor
    skipped a whole partition in ``tests/integration/test_two_worker_failover.py``.  Those partitions
    are sent back to where ``auto_offset_reset`` starts (the beginning, or the end for "latest").
    """

    def _create_worker_consumer(self, transport: Any) -> Any:
        consumer = super()._create_worker_consumer(transport)
        consumer._fetch_max_wait_ms = transport.fetch_max_wait_ms  # read when the fetcher starts
        return consumer

    async def seek_to_committed(self) -> Mapping[TP, int]:
        committed = await super().seek_to_committed()
        reset = uncommitted(committed)
        if reset:
            consumer = self._ensure_consumer()
            latest = self.app.conf.consumer_auto_offset_reset == "latest"
            move = consumer.seek_to_end if latest else consumer.seek_to_beginning
            await self.call_thread(move, *reset)
        return committed


class FastDrainTransport(faust_aiokafka.Transport):
    """Faust's aiokafka transport: :class:`FastDrainConsumer`, batch topics, a configurable fetch wait."""

    Consumer = FastDrainConsumer
    Conductor = BatchConductor

    def __init__(self, url: Any, app: Any, *, fetch_max_wait_ms: int = 1500, **kwargs: Any) -> None:
        super().__init__(url, app, **kwargs)
        self.fetch_max_wait_ms = fetch_max_wait_ms
