"""Ingest benchmark arithmetic: drain rate, CPU figures, and the worker CPU reading."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from streams.bench.harness import WorkerProcess
from streams.bench.ingest import Drain, _cpu_figures
from streams.settings import load_settings


def test_drain_rate_counts_from_first_progress() -> None:
    d = Drain(t0=10.0, t1=14.0, handled_at_t0=2_000, cpu0=1.0, cpu1=3.0)
    assert d.rate(42_000) == 10_000.0
    figures = _cpu_figures(d, 42_000)
    assert figures == {"events_per_cpu_s": 20_000.0, "worker_cpu_s": 2.0, "worker_core_share": 0.5}


def test_cpu_figures_are_left_out_without_a_reading() -> None:
    assert _cpu_figures(Drain(0.0, 1.0, 0, None, 2.0), 10) == {}
    assert _cpu_figures(Drain(0.0, 1.0, 0, 2.0, 2.0), 10) == {}


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="needs /proc")
def test_worker_cpu_seconds_grow_while_it_works(tmp_path: Path) -> None:
    burn = "import time\nt = time.process_time()\nwhile time.process_time() - t < 0.3: pass\ntime.sleep(5)"
    worker = WorkerProcess(load_settings(), tmp_path / "w.log", module="this", args=())
    worker._cmd = [sys.executable, "-c", burn]
    with worker:
        import time

        deadline = time.monotonic() + 10
        used = 0.0
        while time.monotonic() < deadline and used < 0.3:
            used = worker.cpu_seconds() or 0.0
            time.sleep(0.05)
        assert 0.3 <= used < 2.0
    assert worker.cpu_seconds() is None  # exited


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="needs /proc")
def test_the_main_thread_share_leaves_out_what_other_threads_burn(tmp_path: Path) -> None:
    burn = (
        "import threading, time\n"
        "def spin():\n    t = time.thread_time()\n    while time.thread_time() - t < 0.4: pass\n"
        "th = threading.Thread(target=spin); th.start(); th.join(); time.sleep(5)"
    )
    worker = WorkerProcess(load_settings(), tmp_path / "w.log", module="this", args=())
    worker._cmd = [sys.executable, "-c", burn]
    with worker:
        import time

        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and (worker.cpu_seconds() or 0.0) < 0.4:
            time.sleep(0.05)
        total, main = worker.cpu_seconds() or 0.0, worker.main_thread_cpu_seconds()
        assert total >= 0.4 and main is not None and main < 0.2
    assert worker.main_thread_cpu_seconds() is None  # exited


def test_profiled_runs_py_spy_over_the_block_and_reports_its_failure(tmp_path: Path) -> None:
    from streams.bench.harness import profiled
    from streams.errors import InfraError

    fake = tmp_path / "py-spy"  # records its arguments where py-spy would write its stacks
    fake.write_text('#!/bin/sh\nwhile [ "$1" != "-o" ]; do shift; done\necho recorded > "$2"\n')
    fake.chmod(0o755)
    out = tmp_path / "prof" / "stacks.txt"
    with profiled(123, out, 2.0, py_spy=str(fake)):
        pass
    assert out.read_text() == "recorded\n"
    with profiled(123, None, 2.0, py_spy=str(fake)):  # no file asked: nothing runs
        pass
    with pytest.raises(InfraError, match="needs py-spy"), profiled(123, out, 2.0, py_spy=str(tmp_path / "none")):
        pass
    fake.write_text("#!/bin/sh\necho 'Permission denied' >&2\nexit 1\n")
    with pytest.raises(InfraError, match="Permission denied"), profiled(123, out, 2.0, py_spy=str(fake)):
        pass
