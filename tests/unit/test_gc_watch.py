"""The collector watch: installed once, and a real collection is timed and logged."""

from __future__ import annotations

import gc

import pytest

from streams import gc_watch


def test_a_real_collection_is_timed_and_the_watch_is_installed_once(caplog: pytest.LogCaptureFixture) -> None:
    watch = gc_watch.install(warn_ms=0.0)
    try:
        assert gc_watch.install() is watch and gc.callbacks.count(watch) == 1
        before = watch.slow
        gc.collect()
        assert watch.slow == before + 1 and watch.longest_ms > 0.0
        assert "gc generation 2 paused" in caplog.text and "thread MainThread" in caplog.text
    finally:
        gc.callbacks.remove(watch)
