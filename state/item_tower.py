"""Embeddings for catalog items the model never saw: the registry's ONNX item tower over content, batched."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

from models.data import age_bucket, price_bucket
from state.items import ItemRecord
from state.registry import LoadedVersion
from streams.errors import ConfigError

F32 = npt.NDArray[np.float32]
I64 = npt.NDArray[np.int64]
CONTENT_INPUTS = ("item_idx", "item_category", "item_brand", "item_price_bucket", "item_age_bucket")
UNKNOWN = "unknown"


class ItemTower:
    """Runs ``item_tower`` with ``item_idx`` -1 (content only), as training's id dropout taught it to.

    Content is encoded as training encodes it (``models.simlog._content``): a one-hot category over the
    spec's columns (``unknown`` when the category is not one of them), the brand's index in the spec's
    vocabulary (0 = unknown, always 0 for versions exported without one), and log2 price and age buckets,
    the age taken at embedding time.

    >>> ItemTower.has_content({"item_idx", "item_category"})
    False
    """

    def __init__(self, loaded: LoadedVersion) -> None:
        graph = loaded.spec.graphs.get("item_tower")
        if graph is None or "item_tower" not in loaded.sessions or not self.has_content(t.name for t in graph.inputs):
            raise ConfigError(f"model {loaded.manifest.version} has no item tower with content inputs {CONTENT_INPUTS}")
        inputs = {t.name: t for t in graph.inputs}
        self.version = loaded.manifest.version
        self._session: Any = loaded.sessions["item_tower"]
        self._columns = {c: i for i, c in enumerate(inputs["item_category"].columns or [])}
        self._width = int(inputs["item_category"].shape[1] or len(self._columns))
        self._brands = {b: i + 1 for i, b in enumerate(inputs["item_brand"].vocab or [])}

    @staticmethod
    def has_content(names: Any) -> bool:
        """True when a graph with input ``names`` can embed an item from content alone."""
        return set(CONTENT_INPUTS) <= set(names)

    def inputs(self, records: Sequence[ItemRecord], now: float) -> dict[str, Any]:
        """The ONNX feeds for ``records`` (content only)."""
        n = len(records)
        category = np.zeros((n, self._width), dtype=np.float32)
        for row, rec in enumerate(records):
            col = self._columns.get(rec.category, self._columns.get(UNKNOWN))
            if col is not None:
                category[row, col] = 1.0
        return {
            "item_idx": np.full(n, -1, dtype=np.int64),
            "item_category": category,
            "item_brand": _ints(self._brands.get(r.brand, 0) for r in records),
            "item_price_bucket": _ints(price_bucket(r.price) for r in records),
            "item_age_bucket": _ints(age_bucket(r.age_s(now) / 86400.0) for r in records),
        }

    def embed(self, records: Sequence[ItemRecord], now: float) -> F32:
        """One embedding row per record, ``[len(records), dim]``."""
        if not records:
            return np.zeros((0, 0), dtype=np.float32)
        (out,) = self._session.run(["item_embedding"], self.inputs(records, now))
        return np.ascontiguousarray(out, dtype=np.float32)


def _ints(values: Any) -> I64:
    return np.fromiter(values, dtype=np.int64)
