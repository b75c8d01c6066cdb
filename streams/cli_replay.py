"""``streamrec replay``: online (over Kafka, in time order) versus offline HR/NDCG of the same model version."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console
from rich.table import Table

console = Console()


def replay_cmd(
    *,
    dataset: Annotated[str, typer.Option(help="ml-100k")] = "ml-100k",
    data: Annotated[Path, typer.Option(help="MovieLens 100K directory")] = Path("../shared/data/ml-100k"),
    json_out: Annotated[Optional[Path], typer.Option("--json", help="write the report here")] = None,
    max_users: Annotated[Optional[int], typer.Option(help="replay this many users (seeded sample)")] = None,
    sample_rate: Annotated[float, typer.Option(help="share of held-out interactions to ask about")] = 1.0,
    config: Annotated[str, typer.Option(help="training config: default | long | tiny")] = "default",
    seed: int = 0,
    train_replayed_only: Annotated[bool, typer.Option(help="train on the replayed users only (quick)")] = False,
    skew: Annotated[
        Optional[list[str]],
        typer.Option(help="leave a guard off to measure it: user_features, last_n, exploration, mmr, seen"),
    ] = None,
) -> None:
    """Stream the dataset through Kafka into a worker and compare online with offline HR@10 and NDCG@10.

    Exit code 2 when they differ by more than 5 % (relative): a training-serving skew to find.
    """
    from streams.bench.harness import write_json
    from streams.cli_models import _bars
    from streams.replay import ReplayOptions, run_replay
    from streams.settings import load_settings

    if dataset != "ml-100k":
        raise typer.BadParameter(f"unknown dataset {dataset!r}; valid: ml-100k")
    opts = ReplayOptions(
        data=data,
        dataset=dataset,
        max_users=max_users,
        sample_rate=sample_rate,
        seed=seed,
        config=config,
        train_replayed_only=train_replayed_only,
        skews=frozenset(skew or ()),
    )
    with _bars() as bars:
        report = run_replay(load_settings(), opts, bars)
    write_json(json_out, report)
    table = Table("metric", "online", "offline", "relative difference")
    for name in report["online"]:
        table.add_row(
            name,
            f"{report['online'][name]:.4f}",
            f"{report['offline'][name]:.4f}",
            f"{report['relative_difference'][name]:.2%}",
        )
    table.caption = (
        f"{report['interactions_asked']} interactions, {report['users']} users, "
        f"version {report['model_version']}: {'PASS' if report['pass'] else 'FAIL'}"
    )
    console.print(table)
    if not report["pass"]:
        raise typer.Exit(code=2)


def register(app: typer.Typer) -> None:
    app.command("replay")(replay_cmd)
