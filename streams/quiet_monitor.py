"""A Faust monitor without per-message bookkeeping: the worker's metrics come from ``streams.metrics``.

Faust's default ``Monitor`` runs on every message and stream event (counters, clocks, per-stream string
keys, latency deques): a few microseconds per event that nothing here reads, since Faust's web views
are off and the worker exports its own Prometheus metrics.  Commit, rebalance and assignment hooks are
kept as they are.
"""

from __future__ import annotations

from typing import Any

from faust.sensors import Monitor


class QuietMonitor(Monitor):
    """``Monitor`` whose per-message, per-event, per-send and per-table-access hooks do nothing."""

    def on_message_in(self, tp: Any, offset: int, message: Any) -> None:
        return None

    def on_stream_event_in(self, tp: Any, offset: int, stream: Any, event: Any) -> dict[Any, Any] | None:
        return None

    def on_stream_event_out(self, tp: Any, offset: int, stream: Any, event: Any, state: Any = None) -> None:
        return None

    def on_message_out(self, tp: Any, offset: int, message: Any) -> None:
        return None

    def on_send_initiated(self, producer: Any, topic: str, message: Any, keysize: int, valsize: int) -> Any:
        return None

    def on_send_completed(self, producer: Any, state: Any, metadata: Any) -> None:
        return None

    def on_table_get(self, table: Any, key: Any) -> None:
        return None

    def on_table_set(self, table: Any, key: Any, value: Any) -> None:
        return None

    def on_table_del(self, table: Any, key: Any) -> None:
        return None
