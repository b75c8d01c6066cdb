"""``streamrec batch-score``, ``streamrec jobs list|show`` and ``streamrec concept-test``."""

from __future__ import annotations

import asyncio
import dataclasses
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Literal, Optional

import orjson
import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.table import Column, Table

from streams.jobs import JobCounts, JobRecord, JobStore
from streams.settings import Settings, load_settings

if TYPE_CHECKING:
    from agents.batch import BatchConfig
    from agents.funnel.concept import ConceptRow

console = Console(stderr=True)
out_console = Console()


def _progress() -> Progress:
    return Progress(
        TextColumn("[bold]batch-score[/]"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("users · {task.fields[written]} written · {task.fields[failed]} failed"),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=console,
    )


async def _batch(
    settings: Settings, cfg: BatchConfig, out: Literal["redis", "parquet"], path: Path | None, bar: Progress
) -> JobRecord:
    from agents.batch_job import BatchJob, one_search_thread
    from agents.runtime import build_store

    one_search_thread()
    task = bar.add_task("score", total=None, written=0, failed=0)
    store = build_store(settings)
    try:
        job = BatchJob(
            settings,
            store,
            cfg,
            out=out,
            path=path,
            on_start=lambda n: bar.update(task, total=n),
            on_progress=lambda c: bar.update(task, completed=c.users, written=c.written, failed=c.failed),
        )
        rec, _ = await job.run(JobStore(settings.batch.jobs_dir))
        return rec
    finally:
        await store.close()


def batch_score(
    top_k: Annotated[int, typer.Option("--top-k", min=1, help="items per user")] = 10,
    max_users: Annotated[
        Optional[int], typer.Option(min=0, help="score at most this many users (all if unset)")
    ] = None,
    out: Annotated[str, typer.Option(help="redis (served as the precomputed tier) | parquet")] = "redis",
    path: Annotated[Optional[Path], typer.Option(help="Parquet file (default: the jobs dir, {job id}.parquet)")] = None,
    json_out: Annotated[Optional[Path], typer.Option("--json", help="write the finished job record here")] = None,
) -> None:
    """Run the serving funnel over every user in the online store; a job with a record (`streamrec jobs`)."""
    from agents.batch import BatchConfig

    if out not in ("redis", "parquet"):
        raise typer.BadParameter(f"--out must be redis or parquet, got {out!r}")
    settings = load_settings()
    b = settings.batch
    cfg = BatchConfig(
        top_k=top_k, max_users=max_users, chunk_size=b.chunk_size, concurrency=b.concurrency, scan_count=b.scan_count
    )
    with _progress() as bar:
        rec = asyncio.run(_batch(settings, cfg, "redis" if out == "redis" else "parquet", path, bar))
    if json_out is not None:
        json_out.parent.mkdir(parents=True, exist_ok=True)
        json_out.write_text(rec.model_dump_json(indent=2) + "\n", encoding="utf-8")
    r = rec.result
    console.print(
        f"job [bold]{rec.id}[/] {rec.status}: {rec.counts.users:,} users, {rec.counts.written:,} lists written, "
        f"{rec.counts.failed:,} failed, {r.get('users_per_s', 0):,} users/s -> {r.get('path') or r.get('key')}"
    )


def _fmt_time(rec: JobRecord) -> str:
    return rec.created_at.strftime("%Y-%m-%d %H:%M:%S")


def _counts(c: JobCounts) -> str:
    return f"{c.users:,} / {c.written:,} / {c.failed:,}"


def jobs_list(
    json_out: Annotated[bool, typer.Option("--json", help="print JSON lines instead of a table")] = False,
) -> None:
    """Every recorded job, oldest first."""
    recs = JobStore(load_settings().batch.jobs_dir).list()
    if json_out:
        for rec in recs:
            sys.stdout.write(rec.model_dump_json() + "\n")
        return
    table = Table(
        Column("id", no_wrap=True),
        "status",
        "done",
        "users",
        "written",
        "failed",
        "s",
        caption="ids start with the job kind and its UTC start time",
    )
    for rec in recs:
        secs = rec.elapsed_s
        c = rec.counts
        table.add_row(
            rec.id,
            _status(rec),
            f"{rec.progress:.0%}",
            f"{c.users:,}",
            f"{c.written:,}",
            f"{c.failed:,}",
            "" if secs is None else f"{secs:,.1f}",
        )
    out_console.print(table)


def _status(rec: JobRecord) -> str:
    colour = {"succeeded": "green", "failed": "red", "running": "yellow"}.get(rec.status, "white")
    return f"[{colour}]{rec.status}[/]"


def jobs_show(
    job_id: Annotated[str, typer.Argument(help="job id (see `streamrec jobs list`)")],
    json_out: Annotated[bool, typer.Option("--json", help="print the record as JSON")] = False,
) -> None:
    """One job's record: status, progress, counts, times, error and result."""
    rec = JobStore(load_settings().batch.jobs_dir).get(job_id)
    if json_out:
        sys.stdout.write(rec.model_dump_json(indent=2) + "\n")
        return
    table = Table("field", "value", title=f"job {rec.id}", show_header=False)
    rows = [
        ("kind", rec.kind),
        ("status", _status(rec)),
        ("progress", f"{rec.progress:.1%} of {rec.total}"),
        ("users / written / failed", _counts(rec.counts)),
        ("created", str(rec.created_at)),
        ("started", str(rec.started_at)),
        ("finished", str(rec.finished_at)),
        ("error", rec.error or ""),
        ("params", orjson.dumps(rec.params).decode()),
        ("result", orjson.dumps(rec.result).decode()),
    ]
    for name, value in rows:
        table.add_row(name, value)
    out_console.print(table)


def concept_test(
    user: Annotated[str, typer.Option(help="user id")],
    items: Annotated[str, typer.Option(help="comma-separated item ids to rank")],
    surface: Annotated[str, typer.Option(help="surface whose value formula applies")] = "home",
    json_out: Annotated[bool, typer.Option("--json", help="print JSON instead of a table")] = False,
) -> None:
    """Rank the given items for one user with the champion ranker (score, p_click, p_purchase, value)."""
    ids = [i for i in (x.strip() for x in items.split(",")) if i]
    if not ids:
        raise typer.BadParameter("--items names no item")
    rows, version = asyncio.run(_concept(load_settings(), user, ids, surface))
    if json_out:
        doc = {"user_id": user, "model_version": version, "items": [dataclasses.asdict(r) for r in rows]}
        sys.stdout.write(orjson.dumps(doc, option=orjson.OPT_INDENT_2).decode() + "\n")
        return
    table = Table(
        "#", "item", "score", "p_click", "p_purchase", "value", "note", title=f"concept test for {user} with {version}"
    )
    for n, r in enumerate(rows, 1):
        note = "unknown item" if not r.known else (f"serving drops it: {r.filtered}" if r.filtered else "")
        table.add_row(
            str(n), r.item_id, f"{r.score:.4f}", f"{r.p_click:.4f}", f"{r.p_purchase:.4f}", f"{r.value:.4f}", note
        )
    out_console.print(table)


async def _concept(settings: Settings, user: str, ids: list[str], surface: str) -> tuple[list[ConceptRow], str]:
    from agents.batch_job import batch_funnel, load_ranker_version
    from agents.funnel.concept import concept_rows
    from agents.runtime import build_store
    from streams.clock import SystemClock

    loaded = load_ranker_version(settings)
    store = build_store(settings)
    try:
        state, vec, records = await asyncio.gather(
            store.read_user(user), store.read_user_vector(user), store.read_items(ids)
        )
        funnel = batch_funnel(settings, store, loaded, {}, len(ids))
        rows = concept_rows(
            funnel,
            user,
            state=state,
            user_vector=vec,
            item_ids=ids,
            records=records,
            now=SystemClock().now(),
            surface=surface,
        )
        return rows, loaded.manifest.version
    finally:
        await store.close()


def register(app: typer.Typer) -> None:
    """Add ``batch-score``, ``jobs`` and ``concept-test`` to the main CLI."""
    app.command("batch-score")(batch_score)
    app.command("concept-test")(concept_test)
    jobs = typer.Typer(help="Records of batch jobs.", no_args_is_help=True)
    jobs.command("list")(jobs_list)
    jobs.command("show")(jobs_show)
    app.add_typer(jobs, name="jobs")
