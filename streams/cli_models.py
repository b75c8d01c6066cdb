"""CLI commands for models: train, eval, the registry (models list/show/promote) and model benchmarks."""

from __future__ import annotations

import json
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from streams.records import ModelAction

console = Console()
DEFAULT_ML100K = Path("../shared/data/ml-100k")
REGISTRY_HELP = "registry directory (defaults to STREAMREC_MODELS__REGISTRY_DIR)"


@contextmanager
def _bars() -> Iterator[Callable[[str, int, int], None]]:
    """A progress callback ``(task, done, total)`` that draws one rich bar per task."""
    tasks: dict[str, object] = {}
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with Progress(*columns, console=console, transient=False) as progress:

        def update(desc: str, done: int, total: int) -> None:
            if desc not in tasks:
                tasks[desc] = progress.add_task(desc, total=total)
            progress.update(tasks[desc], completed=min(done, total), total=total)  # type: ignore[arg-type]

        yield update


def _registry_dir(registry: Optional[Path]) -> Path:
    if registry is not None:
        return registry
    from streams.settings import load_settings

    return load_settings().models.registry_dir


def _fail(exc: Exception) -> typer.Exit:
    console.print(f"[red]error:[/] {exc}")
    return typer.Exit(code=1)


def train(
    *,
    dataset: Annotated[str, typer.Option(help="ml-100k | sim")] = "ml-100k",
    data: Annotated[
        Path, typer.Option(help="MovieLens directory, or a directory with events.jsonl + catalog.jsonl")
    ] = DEFAULT_ML100K,
    config: Annotated[str, typer.Option(help="default | long | tiny")] = "default",
    registry: Annotated[Optional[Path], typer.Option(help=REGISTRY_HELP)] = None,
    seed: int = 0,
    promote: Annotated[bool, typer.Option(help="promote the new version if it does not regress")] = False,
) -> None:
    """Train the two-tower model (and the ranker on simulator logs), export ONNX + FAISS, publish a version."""
    from models.errors import ModelError
    from models.pipeline import build_version
    from state.registry import FileRegistry

    reg = FileRegistry(_registry_dir(registry))
    try:
        with tempfile.TemporaryDirectory() as tmp, _bars() as bars:
            metrics, window, cfg = build_version(dataset, data, Path(tmp), config=config, seed=seed, progress=bars)
            manifest = reg.publish(
                Path(tmp),
                split=f"{window['dataset']}/{window['protocol']}",
                metrics=metrics,
                data_window=window,
                config=cfg,
            )
        console.print(
            f"published [bold]{manifest.version}[/] ndcg@10={metrics['ndcg@10']:.4f} "
            f"(trained in {cfg['train_seconds']} s)"
        )
        if promote:
            reg.promote(manifest.version)
            console.print(f"champion is now {manifest.version}")
    except ModelError as exc:
        raise _fail(exc) from exc


def eval_cmd(
    *,
    dataset: Annotated[str, typer.Option(help="ml-100k | sim")] = "ml-100k",
    data: Annotated[Path, typer.Option(help="dataset directory")] = DEFAULT_ML100K,
    protocol: Annotated[str, typer.Option(help="leave-last-out")] = "leave-last-out",
    config: Annotated[str, typer.Option(help="default | long | tiny")] = "default",
    json_out: Annotated[Path, typer.Option("--json", help="where to write the results JSON")] = Path("eval.json"),
    plot: Annotated[Optional[Path], typer.Option(help="PNG of metrics by model and by history length")] = None,
    seed: int = 0,
) -> None:
    """Evaluate popularity, ALS, EASE and our retrieval on one split, full ranking, seen items excluded."""
    from models.errors import ModelError
    from models.pipeline import evaluate_all, write_report
    from models.plots import plot_report

    if protocol != "leave-last-out":
        raise typer.BadParameter(f"unknown protocol {protocol!r}; valid: leave-last-out")
    try:
        with _bars() as bars:
            report = evaluate_all(dataset, data, config=config, seed=seed, progress=bars)
    except ModelError as exc:
        raise _fail(exc) from exc
    write_report(report, json_out)
    if plot is not None:
        plot_report(report.per_model, f"{report.dataset} {report.protocol} (config {config})", plot)
    table = Table("model", "ndcg@10", "hr@10", "recall@50", "mrr", "coverage", "ild")
    for name, res in report.results.items():
        if "ndcg@10" in res:
            table.add_row(name, *(f"{res[k]:.4f}" for k in ("ndcg@10", "hr@10", "recall@50", "mrr", "coverage", "ild")))
    console.print(table)
    console.print(f"wrote {json_out}" + (f" and {plot}" if plot else ""))


def models_list(registry: Annotated[Optional[Path], typer.Option(help=REGISTRY_HELP)] = None) -> None:
    """List the versions in the registry; the champion is marked with *."""
    from state.registry import FileRegistry

    reg = FileRegistry(_registry_dir(registry))
    champ = reg.champion()
    table = Table("", "version", "created", "split", "primary", "code")
    for m in reg.list():
        primary = f"{m.primary_metric}={m.metrics.get(m.primary_metric, float('nan')):.4f}"
        table.add_row(
            "*" if m.version == champ else "",
            m.version,
            m.created_at.isoformat(timespec="seconds"),
            m.split,
            primary,
            m.code_version[:12],
        )
    console.print(table)


def models_show(version: str, registry: Annotated[Optional[Path], typer.Option(help=REGISTRY_HELP)] = None) -> None:
    """Print a version's manifest (verifying its file hashes)."""
    from models.errors import ModelError
    from state.registry import FileRegistry

    try:
        manifest, _ = FileRegistry(_registry_dir(registry)).verify(version)
    except ModelError as exc:
        raise _fail(exc) from exc
    console.print_json(manifest.model_dump_json())


UNPUBLISHED_EXIT = 2


def announce(version: str, action: ModelAction) -> None:
    """Publish the registry change on the model-updates topic; exit 2 (the change stands) when Kafka is unreachable."""
    import asyncio
    import time

    from streams.errors import InfraError
    from streams.model_updates import model_update, publish_update
    from streams.settings import load_settings

    settings = load_settings()
    try:
        update = model_update(version, action, time.time())
        asyncio.run(publish_update(settings.kafka, update, settings.models.updates_timeout_s))
    except InfraError as exc:
        console.print(
            f"[yellow]warning:[/] the registry change stands, but workers were not told: {exc}. "
            f"They pick it up at their next registry poll (every {settings.models.poll_interval_s:g} s)."
        )
        raise typer.Exit(code=UNPUBLISHED_EXIT) from exc
    console.print(f"announced {action} {version} on the model-updates topic")


def models_promote(
    version: str,
    force: Annotated[bool, typer.Option(help="promote even if the primary metric regresses")] = False,
    registry: Annotated[Optional[Path], typer.Option(help=REGISTRY_HELP)] = None,
    publish: Annotated[bool, typer.Option(help="announce it on the model-updates topic")] = True,
) -> None:
    """Make a version the champion and announce it to the workers; refuses a regression unless --force.

    Exit codes: 0 done, 1 refused (nothing changed), 2 champion changed but Kafka unreachable.
    """
    from models.errors import ModelError
    from state.registry import FileRegistry

    try:
        FileRegistry(_registry_dir(registry)).promote(version, force=force)
    except ModelError as exc:
        raise _fail(exc) from exc
    console.print(f"champion is now {version}")
    if publish:
        announce(version, "promote")


def models_retire(
    version: str,
    registry: Annotated[Optional[Path], typer.Option(help=REGISTRY_HELP)] = None,
    publish: Annotated[bool, typer.Option(help="announce it on the model-updates topic")] = True,
) -> None:
    """Retire the champion (workers then serve without a model, flagged fallback) and announce it."""
    from models.errors import ModelError
    from state.registry import FileRegistry

    try:
        FileRegistry(_registry_dir(registry)).retire(version)
    except ModelError as exc:
        raise _fail(exc) from exc
    console.print(f"{version} retired; there is no champion")
    if publish:
        announce(version, "retire")


def bench_ann_cmd(
    *,
    items: Annotated[int, typer.Option(help="catalog size")] = 1_000_000,
    json_out: Annotated[Path, typer.Option("--json", help="where to write the results")] = Path("ann.json"),
    index: Annotated[str, typer.Option(help="ivf | hnsw")] = "ivf",
    dim: int = 64,
    seed: int = 0,
) -> None:
    """HNSW vs exact search over simulated item-tower embeddings: recall@200 and one-thread latency."""
    from models.bench import bench_ann

    with _bars() as bars:
        if index not in ("ivf", "hnsw"):
            raise typer.BadParameter(f"unknown index {index!r}; valid: ivf, hnsw")
        result = bench_ann(items, kind=index, dim=dim, seed=seed, progress=bars)
    json_out.write_text(json.dumps(result, indent=2), encoding="utf-8")
    console.print({k: v for k, v in result.items() if k != "sweep"})


def bench_ranker_cmd(
    json_out: Annotated[Path, typer.Option("--json", help="where to write the results")] = Path("ranker.json"),
    onnx: Annotated[Optional[Path], typer.Option(help="a ranker.onnx to time (default: a freshly built one)")] = None,
    candidates: int = 1000,
) -> None:
    """One-thread onnxruntime latency of scoring ``candidates`` rows with the ranker."""
    from models.bench import bench_ranker

    result = bench_ranker(onnx, candidates=candidates)
    json_out.write_text(json.dumps(result, indent=2), encoding="utf-8")
    console.print(result)


def register(app: typer.Typer, bench_app: typer.Typer | None = None) -> None:
    """Add ``train``, ``eval``, ``models list|show|promote`` and ``bench ann|ranker`` to ``app``.

    Pass the main CLI's existing ``bench`` sub-app as ``bench_app``; without it a ``bench`` group is created.
    """
    app.command("train")(train)
    app.command("eval")(eval_cmd)
    models_app = typer.Typer(help="The model registry.", no_args_is_help=True)
    models_app.command("list")(models_list)
    models_app.command("show")(models_show)
    models_app.command("promote")(models_promote)
    models_app.command("retire")(models_retire)
    app.add_typer(models_app, name="models")
    if bench_app is None:
        bench_app = typer.Typer(help="Benchmarks that write JSON.", no_args_is_help=True)
        app.add_typer(bench_app, name="bench")
    bench_app.command("ann")(bench_ann_cmd)
    bench_app.command("ranker")(bench_ranker_cmd)


def main() -> None:
    """Run only the model commands (``python -m streams.cli_models``); ``streamrec`` mounts the same ones."""
    app = typer.Typer(help="streamrec model commands.", no_args_is_help=True)
    register(app)
    app()


if __name__ == "__main__":
    main()
