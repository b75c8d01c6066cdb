"""Shared benchmark mechanics: isolated settings, worker subprocesses, latency summaries, JSON output."""

from __future__ import annotations

import asyncio
import math
import os
import shutil
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from types import TracebackType
from typing import Any, Self

import numpy as np
import orjson

from streams.client import RecClient
from streams.errors import InfraError, RequestTimeoutError
from streams.settings import Settings, child_env


def isolated(settings: Settings, tag: str, **worker: Any) -> Settings:
    """A copy of ``settings`` with a fresh topic prefix and consumer group, so runs never interfere."""
    run = f"{tag}-{uuid.uuid4().hex[:8]}"
    kafka = settings.kafka.model_copy(update={"topic_prefix": f"{run}."})
    w = settings.worker.model_copy(update={"app_id": run, "data_dir": Path(".run") / run, **worker})
    redis = settings.redis.model_copy(update={"key_prefix": run})
    metrics = settings.metrics.model_copy(update={"port": 0})  # a free port: several workers may run at once
    return settings.model_copy(update={"kafka": kafka, "worker": w, "redis": redis, "metrics": metrics})


def private_redis(port: int, workdir: Path) -> subprocess.Popen[bytes]:
    """A throwaway Redis the benchmark may kill (never the shared one)."""
    workdir.mkdir(parents=True, exist_ok=True)
    exe = shutil.which("redis-server") or "redis-server"
    return subprocess.Popen(  # noqa: S603 - fixed arguments
        [exe, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", str(workdir)],
        stdout=subprocess.DEVNULL,
    )


def free_port() -> int:
    """A TCP port nothing listens on right now (the OS picks it), for a private server."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def wait_listening(port: int, proc: subprocess.Popen[bytes], timeout_s: float = 10.0) -> None:
    """Wait until a local server on ``port`` accepts connections; InfraError if ``proc`` exits or time runs out."""
    end = time.perf_counter() + timeout_s
    while time.perf_counter() < end:
        if proc.poll() is not None:
            raise InfraError(f"server for port {port} exited with {proc.returncode} (port taken?)")
        try:
            _, writer = await asyncio.open_connection("127.0.0.1", port)
        except OSError:
            await asyncio.sleep(0.05)
            continue
        writer.close()
        return
    raise InfraError(f"nothing listens on port {port} after {timeout_s:.0f} s")


def summarize_ms(samples: Sequence[float]) -> dict[str, float]:
    """p50/p95/p99/max of latencies given in milliseconds.

    >>> summarize_ms([1.0, 2.0, 3.0, 4.0])["p50_ms"]
    2.5
    """
    if not samples:
        return {"p50_ms": float("nan"), "p95_ms": float("nan"), "p99_ms": float("nan"), "max_ms": float("nan")}
    a = np.asarray(samples, dtype=np.float64)
    p50, p95, p99 = np.percentile(a, [50, 95, 99])
    return {
        "p50_ms": round(float(p50), 3),
        "p95_ms": round(float(p95), 3),
        "p99_ms": round(float(p99), 3),
        "max_ms": round(float(a.max()), 3),
    }


def timeline_ms(offsets_s: Sequence[float], samples: Sequence[float], width_s: float = 1.0) -> list[list[float]]:
    """Latencies grouped by when they were sent: ``[start_s, count, p50_ms, max_ms]`` per ``width_s`` window,
    so a stall (one slow second) reads apart from a steady overload (every second slow).

    >>> timeline_ms([0.1, 0.5, 1.2], [2.0, 4.0, 9.0])
    [[0.0, 2, 3.0, 4.0], [1.0, 1, 9.0, 9.0]]
    """
    windows: dict[int, list[float]] = {}
    for at, ms in zip(offsets_s, samples, strict=True):
        windows.setdefault(int(at // width_s), []).append(ms)
    return [
        [w * width_s, len(v), round(float(np.median(v)), 3), round(max(v), 3)] for w, v in sorted(windows.items())
    ]


def write_json(path: Path | None, result: dict[str, Any]) -> bytes:
    data = orjson.dumps(result, option=orjson.OPT_INDENT_2 | orjson.OPT_SERIALIZE_NUMPY)
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data + b"\n")
    return data


class WorkerProcess:
    """A ``streamrec worker`` child process with the given settings; stopped (or killed) on exit."""

    def __init__(
        self, settings: Settings, log_path: Path, module: str = "streams.cli", args: Sequence[str] = ("worker",)
    ) -> None:
        self.settings = settings
        self.log_path = log_path
        self._cmd = [sys.executable, "-m", module, *args]
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> Self:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        log = self.log_path.open("ab")
        self.proc = subprocess.Popen(self._cmd, env=child_env(self.settings), stdout=log, stderr=subprocess.STDOUT)  # noqa: S603
        return self

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def stop(self, timeout: float = 20.0) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.terminate()
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()

    def cpu_seconds(self) -> float | None:
        """User + system CPU the worker has used so far (Linux ``/proc``; None elsewhere or once exited).

        On a machine shared with other work, events per CPU-second is the worker's capacity; events
        per wall-second is only what it got of the cores.
        """
        if self.proc is None:
            return None
        return _stat_cpu_seconds(Path(f"/proc/{self.proc.pid}/stat"))

    def main_thread_cpu_seconds(self) -> float | None:
        """:meth:`cpu_seconds` of the worker's main thread only (its event loop); the rest is other threads'
        (Faust's consumer thread, the recall check, thread pools)."""
        if self.proc is None:
            return None
        return _stat_cpu_seconds(Path(f"/proc/{self.proc.pid}/task/{self.proc.pid}/stat"))

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, t: type[BaseException] | None, v: BaseException | None, tb: TracebackType | None) -> None:
        self.stop()


async def wait_until_serving(client: RecClient, worker: WorkerProcess | None, timeout_s: float = 90.0) -> float:
    """Probe with requests until one is answered; return seconds waited. Raises InfraError on timeout."""
    start = time.perf_counter()
    while time.perf_counter() - start < timeout_s:
        if worker is not None and not worker.alive():
            raise InfraError(f"worker exited early; see {worker.log_path}")
        try:
            await client.recommend("__probe__", 1, deadline_ms=1000)
            return time.perf_counter() - start
        except RequestTimeoutError:
            await asyncio.sleep(0.2)
    raise InfraError(f"worker did not answer within {timeout_s:.0f} s")


def simulated_lines(
    n_events: int, *, seed: int, n_users: int, n_items: int, start: float
) -> tuple[list[bytes], list[bytes]]:
    """``n_events`` simulated events as wire JSON, plus the catalog as item updates, from ``start`` on."""
    from streams.codec import encode
    from streams.sim_output import event_json
    from streams.simulator import SimConfig, Simulator

    sim = Simulator(SimConfig(seed=seed, start=start, n_users=n_users, n_items=n_items))
    events = [line for batch in sim.batches(max_events=n_events) for line in event_json(batch, seed)]
    catalog = [encode(update) for at, update in sim.catalog_updates() if at <= start]
    return events, catalog


def user_ids(lines: Sequence[bytes]) -> list[str]:
    """The distinct users of wire-format event lines, sorted (the simulator writes ``"user_id":"..."``).

    >>> user_ids([b'{"user_id":"u2","x":1}', b'{"user_id":"u1"}', b'{"user_id":"u2"}'])
    ['u1', 'u2']
    """
    return sorted({line.split(b'"user_id":"', 1)[1].split(b'"', 1)[0].decode() for line in lines})


def engaged_users(lines: Sequence[bytes]) -> list[str]:
    """The distinct users with at least one event other than an impression (those have a session vector).

    >>> engaged_users([b'{"type":"impression","user_id":"u1"}', b'{"type":"click","user_id":"u2"}'])
    ['u2']
    """
    return user_ids([line for line in lines if b'"type":"impression"' not in line])


def _stat_cpu_seconds(stat: Path) -> float | None:
    """User + system CPU seconds of a ``/proc`` process or thread ``stat`` file (None when it is gone)."""
    try:
        fields = stat.read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@contextmanager
def profiled(pid: int | None, out: Path | None, seconds: float, py_spy: str = "py-spy") -> Iterator[None]:
    """py-spy records process ``pid`` (every thread, idle time included, 100 Hz, raw collapsed stacks into
    ``out``) for ``seconds`` while the block runs; nothing when ``out`` is None. Raises InfraError without
    py-spy. Profiling costs the process CPU: a profiled run's latencies are not comparable."""
    if out is None or pid is None:
        yield
        return
    exe = shutil.which(py_spy)
    if exe is None:
        raise InfraError(f"profiling needs py-spy ({py_spy!r} is not an executable; pip install py-spy)")
    out.parent.mkdir(parents=True, exist_ok=True)
    args = ["record", "-p", str(pid), "-d", str(math.ceil(seconds)), "-r", "100", "-f", "raw", "-o", str(out)]
    proc = subprocess.Popen(  # noqa: S603 - fixed arguments
        [exe, *args, "--threads", "--idle", "--nonblocking"], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    try:
        yield
    finally:
        _, err = proc.communicate(timeout=seconds + 60)
        if proc.returncode != 0:
            raise InfraError(f"py-spy failed ({proc.returncode}): {err.decode(errors='replace')[-500:]}")
