"""Commands registered onto the main CLI: simulate, demo, benchmarks, and the models commands."""

from __future__ import annotations

import typer


def register(app: typer.Typer, bench: typer.Typer) -> None:
    """Mount the optional command groups (each imports its heavy dependencies lazily)."""
    from streams import cli_batch, cli_bench, cli_drift, cli_models, cli_ops, cli_replay, cli_sim

    cli_sim.register(app)
    cli_ops.register(app)
    cli_batch.register(app)
    cli_drift.register(app)
    cli_bench.register(bench)
    cli_models.register(app, bench)
    cli_replay.register(app)
