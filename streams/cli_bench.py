"""``streamrec bench ingest|serve``: benchmarks against the real broker that write JSON."""

from __future__ import annotations

import typer


def register(bench: typer.Typer) -> None:
    """Add the streaming benchmarks to the ``bench`` group."""
