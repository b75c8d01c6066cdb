"""Sinks of batch-scored lists: the online store (served as the precomputed tier) and Parquet files."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from state.precomputed import PrecomputedList
from state.store import OnlineFeatureStore
from streams.errors import ConfigError

#: One row per (user, rank); ``created_at`` is when the list was scored.
PARQUET_COLUMNS = ("user_id", "rank", "item_id", "score", "model_version", "job_id", "created_at")


class RedisSink:
    """Writes each chunk in one transaction under ``{prefix}:v1:rec:{user}``, expiring after ``ttl_s``."""

    def __init__(self, store: OnlineFeatureStore, ttl_s: int) -> None:
        self.store, self.ttl_s, self.rows = store, ttl_s, 0

    async def write(self, lists: Sequence[PrecomputedList]) -> None:
        await self.store.write_precomputed(lists, self.ttl_s)
        self.rows += len(lists)

    async def close(self) -> dict[str, object]:
        return {"out": "redis", "key": "{prefix}:v1:rec:{user}", "ttl_s": self.ttl_s, "lists": self.rows}


def _schema() -> Any:
    import pyarrow as pa

    return pa.schema(
        [
            ("user_id", pa.string()),
            ("rank", pa.int32()),
            ("item_id", pa.string()),
            ("score", pa.float64()),
            ("model_version", pa.string()),
            ("job_id", pa.string()),
            ("created_at", pa.timestamp("us", tz="UTC")),
        ]
    )


class ParquetSink:
    """Appends each chunk as one row group of ``path`` (written to ``path.tmp``, renamed on close)."""

    def __init__(self, path: Path) -> None:
        if path.suffix != ".parquet":
            raise ConfigError(f"parquet output must end in .parquet, got {path}")
        import pyarrow.parquet as pq

        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._tmp = path.with_name(path.name + ".tmp")
        self._writer = pq.ParquetWriter(str(self._tmp), _schema(), compression="zstd")
        self.rows = 0

    async def write(self, lists: Sequence[PrecomputedList]) -> None:
        import pyarrow as pa

        cols: dict[str, list[Any]] = {c: [] for c in PARQUET_COLUMNS}
        for rec in lists:
            at = datetime.fromtimestamp(rec.created_at, UTC)
            for rank, (item, score) in enumerate(rec.items):
                for name, value in zip(
                    PARQUET_COLUMNS, (rec.user_id, rank, item, score, rec.model_version, rec.job_id, at), strict=True
                ):
                    cols[name].append(value)
        if cols["user_id"]:
            self._writer.write_table(pa.Table.from_pydict(cols, schema=_schema()))
            self.rows += len(cols["user_id"])

    async def close(self) -> dict[str, object]:
        self._writer.close()
        self._tmp.replace(self.path)
        return {"out": "parquet", "path": str(self.path), "rows": self.rows}

    def abort(self) -> None:
        """Drop the partial file (a failed job leaves no half-written output behind)."""
        self._writer.close()
        self._tmp.unlink(missing_ok=True)
