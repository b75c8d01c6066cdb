"""``streamrec drift report``: PSI of what was served (impressions topic or a snapshot) vs the training window."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Annotated, Optional

import orjson
import typer
from rich.console import Console
from rich.table import Table

from models.drift_report import DriftReport

console = Console()
BREACH_EXIT = 3


def _report(source: str, version: str | None, registry: Path, max_rows: int) -> DriftReport:
    from models.drift_report import collect, drift_report, read_snapshot
    from models.errors import RegistryError
    from state.registry import FileRegistry
    from streams.cli_ops import read_all
    from streams.records import Impression
    from streams.settings import load_settings
    from streams.topics import topic_names

    reg = FileRegistry(registry)
    if source.startswith("snapshot:"):
        snap_version, samples = read_snapshot(Path(source.removeprefix("snapshot:")))
        version = version or snap_version
        impressions = 0
    elif source == "impressions":
        version = version or reg.champion()
        if version is None:
            raise RegistryError(f"{registry}: no champion; name a version with --version")
        settings = load_settings()
        raw = asyncio.run(read_all(settings.kafka, topic_names(settings.kafka).impressions))
        samples, impressions, skipped = collect((Impression.model_validate_json(v) for v in raw), version,
                                                max_rows=max_rows)  # fmt: skip
    else:
        raise typer.BadParameter(f"--from {source!r}: use 'impressions' or 'snapshot:PATH'")
    reference = reg.get(version).drift
    if reference is None:
        raise RegistryError(f"version {version} has no drift reference (published before references, or no ranker)")
    report = drift_report(reference, samples, version=version, source=source, impressions=impressions)
    if source == "impressions":
        report.skipped = dict(skipped)
    return report


def report_cmd(
    version: Annotated[
        Optional[str], typer.Option(help="model version (default: the champion or the snapshot's)")
    ] = None,
    source: Annotated[str, typer.Option("--from", help="'impressions' (the topic) or 'snapshot:PATH'")] = "impressions",
    json_out: Annotated[Optional[Path], typer.Option("--json", help="write the report JSON here")] = None,
    plot: Annotated[Optional[Path], typer.Option(help="PNG of PSI per feature and the worst distributions")] = None,
    registry: Annotated[Optional[Path], typer.Option(help="registry directory (default: settings)")] = None,
    max_rows: Annotated[int, typer.Option(help="served rows sampled at most (uniformly)")] = 200_000,
    fail_above: Annotated[Optional[float], typer.Option(help="exit 3 when any PSI exceeds this")] = None,
) -> None:
    """PSI of every ranker feature and score served by a version against its training-window reference."""
    from models.drift_report import plot_drift
    from streams.settings import load_settings

    report = _report(source, version, registry or load_settings().models.registry_dir, max_rows)
    if json_out is not None:
        json_out.write_bytes(orjson.dumps(report.to_json(), option=orjson.OPT_INDENT_2) + b"\n")
    if plot is not None and report.features:
        plot_drift(report, plot)
    table = Table("feature", "PSI", "level", "training mean", "live mean", title=_title(report))
    for f in report.worst(15):
        table.add_row(f.name, f"{f.psi:.4f}", f.level, f"{f.reference_mean:.4g}", f"{f.live_mean:.4g}")
    console.print(table)
    if report.skipped:
        console.print(f"impressions skipped: {report.skipped}")
    if fail_above is not None and any(f.psi > fail_above for f in report.features):
        raise typer.Exit(code=BREACH_EXIT)


def _title(report: DriftReport) -> str:
    return f"drift of {report.version}: {report.rows} served rows from {report.source} vs {report.reference_rows}"


def register(app: typer.Typer) -> None:
    """Add the ``drift`` group to the main CLI."""
    drift = typer.Typer(help="Feature and score drift (PSI) against the training window.", no_args_is_help=True)
    drift.command("report")(report_cmd)
    app.add_typer(drift, name="drift")
