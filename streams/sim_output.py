"""Simulator output: JSON lines in the wire format (fast path for Kafka and files), JSONL files, pacing."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import TypeVar

import numpy as np

from streams.codec import encode
from streams.records import EVENT_TYPES
from streams.sim_sessions import EventBatch
from streams.simulator import Simulator

T = TypeVar("T")


def event_json(batch: EventBatch, seed: int) -> list[bytes]:
    """Wire-format JSON of each event of ``batch`` (what ``codec.encode`` gives for the same ``Event``)."""
    stamps = np.datetime_as_string(np.round(batch.ts * 1e6).astype("datetime64[us]"), unit="us", timezone="UTC")
    out: list[bytes] = []
    cols = (
        stamps.tolist(),
        batch.type.tolist(),
        batch.user.tolist(),
        batch.item.tolist(),
        batch.session.tolist(),
        batch.request.tolist(),
        batch.position.tolist(),
        batch.price.tolist(),
        batch.seq.tolist(),
    )
    for ts, t, u, i, s, r, p, price, q in zip(*cols, strict=True):
        tail = "" if r < 0 else f',"request_id":"r{seed}-{r}"'
        if p >= 0:
            tail = f',"position":{p}{tail}'
        out.append(
            f'{{"schema_version":1,"event_id":"e{seed}-{q}","type":"{EVENT_TYPES[t]}","user_id":"u{u}",'
            f'"item_id":"i{i}","ts":"{ts}","session_id":"s{seed}-{s}","price":{price!r}{tail}}}'.encode()
        )
    return out


def write_jsonl(
    sim: Simulator, events_path: Path, catalog_path: Path, *, max_events: int | None = None, until: float | None = None
) -> tuple[int, int]:
    """Write events and catalog records (every update, in time order) as JSON lines; return both counts."""
    events_path, catalog_path = Path(events_path), Path(catalog_path)
    n_events = 0
    with events_path.open("wb") as fh:
        for batch in sim.batches(max_events=max_events, until=until):
            lines = event_json(batch, sim.cfg.seed)
            fh.write(b"\n".join(lines) + b"\n")
            n_events += len(lines)
            last = float(batch.ts[-1])
    end = until if until is not None else (last if n_events else sim.cfg.start)
    updates = [u for t, u in sim.catalog_updates() if t <= end]
    with catalog_path.open("wb") as fh:
        fh.writelines(encode(u) + b"\n" for u in updates)
    return n_events, len(updates)


def paced(
    items: Iterable[T],
    rate_per_s: float,
    *,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
    burst: int = 100,
) -> Iterator[T]:
    """Yield ``items`` at about ``rate_per_s`` (sleeping every ``burst`` items); never faster on average.

    >>> t = [0.0]
    >>> def fake_sleep(s: float) -> None: t[0] += s
    >>> list(paced(range(5), 2.0, clock=lambda: t[0], sleep=fake_sleep, burst=1)), t[0]
    ([0, 1, 2, 3, 4], 2.0)
    """
    if rate_per_s <= 0:
        raise ValueError(f"rate must be > 0, got {rate_per_s}")
    start = clock()
    for n, item in enumerate(items):
        if n % burst == 0:
            ahead = start + n / rate_per_s - clock()
            if ahead > 0:
                sleep(ahead)
        yield item
