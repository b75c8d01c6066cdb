"""A large simulated catalog for the serve benchmark: columns drawn with numpy, written to the store in batches.

The simulator's world (the items events are about) stays small; :func:`extend_catalog` adds long-tail
items with ids after the world's, in the world's categories and brand namespace, so the item tower
embeds them like any other item and retrieval over the whole catalog finds them.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
import orjson

from models.catalog_index import ItemContent
from streams.errors import InfraError
from streams.records import ItemUpdate
from streams.settings import Settings

F64 = npt.NDArray[np.float64]
I64 = npt.NDArray[np.int64]
DAY_S = 86_400.0


@dataclass(frozen=True)
class CatalogColumns:
    """Items as columns: ids, category and brand as codes into name lists, price, availability, creation time."""

    ids: tuple[str, ...]
    category: I64
    category_names: tuple[str, ...]
    brand: I64
    brand_names: tuple[str, ...]
    price: F64
    available: npt.NDArray[np.bool_]
    created_at: F64

    def __len__(self) -> int:
        return len(self.ids)

    def wire_lines(self) -> list[bytes]:
        """Every item as an items-topic JSON line (``streams.records.ItemUpdate``), timestamps formatted by numpy.

        >>> cols = extend_catalog(0, 2, now=1.7e9, seed=1)
        >>> from streams.codec import decode_item
        >>> from streams.settings import ValidationSettings
        >>> upd = decode_item(cols.wire_lines()[1], now=1.7e9, limits=ValidationSettings())
        >>> upd.item_id, upd.category == cols.category_names[cols.category[1]], upd.price == float(cols.price[1])
        ('i1', True, True)
        """
        stamps = np.datetime_as_string((self.created_at * 1e6).astype("datetime64[us]"), timezone="UTC").tolist()
        cats, brands = self.category_names, self.brand_names
        cols = zip(
            self.ids,
            self.category.tolist(),
            self.brand.tolist(),
            self.price.tolist(),
            self.available.tolist(),
            stamps,
            strict=True,
        )
        return [
            orjson.dumps(
                {
                    "schema_version": 1,
                    "item_id": i,
                    "category": cats[c],
                    "brand": brands[b],
                    "price": p,
                    "available": a,
                    "created_at": t,
                }
            )
            for i, c, b, p, a, t in cols
        ]


def extend_catalog(
    first: int,
    count: int,
    *,
    n_categories: int = 20,
    brands_per_category: int = 8,
    now: float,
    seed: int = 0,
    unavailable_share: float = 0.05,
) -> CatalogColumns:
    """``count`` items ``i{first}``, ``i{first + 1}``, ..., named like the simulator's (``cat{c}``, ``brand{b}``).

    Prices are log-normal around a per-category level, creation times uniform over the past year.

    >>> cols = extend_catalog(10, 1000, now=1e9, seed=1)
    >>> len(cols), cols.ids[0], cols.ids[-1], bool(cols.price.min() > 0)
    (1000, 'i10', 'i1009', True)
    >>> sorted({cols.category_names[c] for c in cols.category})[:2]
    ['cat0', 'cat1']
    """
    n = max(0, count)
    rng = np.random.default_rng([seed, 99])
    category = rng.integers(0, n_categories, n)
    brand = category * brands_per_category + rng.integers(0, brands_per_category, n)
    level = rng.normal(3.0, 0.8, n_categories)
    price = np.round(np.exp(level[category] + rng.normal(0.0, 0.5, n)), 2)
    return CatalogColumns(
        ids=tuple(f"i{j}" for j in range(first, first + n)),
        category=category.astype(np.int64),
        category_names=tuple(f"cat{c}" for c in range(n_categories)),
        brand=brand.astype(np.int64),
        brand_names=tuple(f"brand{b}" for b in range(n_categories * brands_per_category)),
        price=price.astype(np.float64),
        available=rng.random(n) >= unavailable_share,
        created_at=np.round(now - rng.uniform(0.0, 365 * DAY_S, n), 6),
    )


def brand_vocabulary(brands: Sequence[str]) -> tuple[str, ...]:
    """The training brand list (``models.simlog``: sorted distinct non-empty brands; index + 1 is the code).

    >>> brand_vocabulary(["b2", "", "b1", "b2"])
    ('b1', 'b2')
    """
    return tuple(sorted({b for b in brands if b}))


def extra_content(cols: CatalogColumns, now: float) -> ItemContent:
    """Tower inputs of items the model never saw (``item_idx = -1``: content only)."""
    return ItemContent(
        item_idx=np.full(len(cols), -1, np.int64),
        category=[cols.category_names[c] for c in cols.category.tolist()],
        brand=[cols.brand_names[b] for b in cols.brand.tolist()],
        price=cols.price,
        age_days=(now - cols.created_at) / DAY_S,
    )


def parse_catalog(lines: Sequence[bytes]) -> dict[str, ItemUpdate]:
    """The last update per item of wire-format catalog lines."""

    return {u.item_id: u for u in (ItemUpdate.model_validate(orjson.loads(line)) for line in lines)}


async def build_big_catalog(
    settings: Settings, catalog_lines: Sequence[bytes], n_items: int, world_items: int, seed: int = 0
) -> tuple[list[bytes], dict[str, Any]]:
    """Grow the champion's catalog to ``n_items``: a re-indexed version promoted, and the new items' lines.

    The lines go to the items topic like any catalog update (the worker writes them to the store and its
    local catalog). Returns them and what was built, with timings (the benchmark's ``catalog`` section).
    """
    from models.catalog_index import reindex_version
    from state.registry import FileRegistry

    reg_dir = settings.models.registry_dir
    base = FileRegistry(reg_dir).champion()
    if base is None:
        raise InfraError(f"{reg_dir}: no champion to grow the catalog of")
    base_ids = FileRegistry(reg_dir).load(base).item_ids
    now, t0 = time.time(), time.perf_counter()
    cols = extend_catalog(world_items, n_items - len(base_ids), now=now, seed=seed)
    lines = cols.wire_lines()
    brands = brand_vocabulary([u.brand for u in parse_catalog(catalog_lines).values()])
    generated = time.perf_counter() - t0
    built = await asyncio.to_thread(reindex_version, reg_dir, base, cols.ids, extra_content(cols, now), brands)
    return lines, {
        "items": built.items,
        "trained_items": len(base_ids),
        "version": built.version,
        "index": {
            "kind": "ivf",
            "nlist": built.nlist,
            "nprobe": built.nprobe,
            f"recall_at_{built.recall_k}": built.recall,
        },
        "generate_s": round(generated, 2),
        "embed_s": built.embed_seconds,
        "index_s": built.index_seconds,
    }
