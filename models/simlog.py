"""Loader for the simulator's JSONL logs: ``Event`` lines become interactions and labelled impressions."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import numpy as np
from pydantic import ValidationError

from models.data import (
    Dataset,
    FloatArray,
    IntArray,
    Interactions,
    ItemContent,
    Vocab,
    age_bucket,
    price_bucket,
)
from models.errors import DataError
from streams.records import Event, EventType, ItemUpdate

_R = TypeVar("_R", Event, ItemUpdate)
DEFAULT_POSITIVE_TYPES: tuple[EventType, ...] = ("view", "click", "add_to_cart", "purchase")


@dataclass(frozen=True)
class Impressions:
    """One row per shown item, labelled with whether it was clicked and purchased afterwards."""

    user: IntArray
    item: IntArray
    ts: IntArray
    position: IntArray
    clicked: FloatArray
    purchased: FloatArray

    def __len__(self) -> int:
        return int(self.user.shape[0])


@dataclass(frozen=True)
class SimLog:
    """A simulator run: the retrieval dataset, labelled impressions, and the raw events sorted by time."""

    dataset: Dataset
    impressions: Impressions
    events: tuple[Event, ...]
    catalog: dict[str, ItemUpdate]


def read_jsonl(path: Path, model: type[_R]) -> list[_R]:
    """Parse one record per non-blank line; a malformed line raises :class:`DataError` naming file and line."""
    if not path.is_file():
        raise DataError(f"{path}: file not found")
    out: list[_R] = []
    with path.open(encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, start=1):
            if not line.strip():
                continue
            try:
                out.append(model.model_validate_json(line))
            except ValidationError as exc:
                first = exc.errors()[0]
                where = ".".join(str(p) for p in first.get("loc", ())) or "line"
                raise DataError(f"{path}:{lineno}: invalid {model.__name__}: {where}: {first['msg']}") from None
    return out


def _content(items: Vocab, catalog: dict[str, ItemUpdate], ref_ts: float) -> ItemContent:
    cats = sorted({u.category for u in catalog.values()} | {"unknown"})
    brands = sorted({u.brand for u in catalog.values() if u.brand})
    n = len(items)
    category = np.zeros((n, len(cats)), dtype=np.float32)
    brand = np.zeros(n, dtype=np.int64)
    price = np.zeros(n, dtype=np.int64)
    age = np.zeros(n, dtype=np.int64)
    for i, item_id in enumerate(items.ids):
        upd = catalog.get(item_id)
        if upd is None:
            category[i, cats.index("unknown")] = 1.0
            continue
        category[i, cats.index(upd.category)] = 1.0
        brand[i] = brands.index(upd.brand) + 1 if upd.brand else 0
        price[i] = price_bucket(upd.price)
        age[i] = age_bucket((ref_ts - upd.created_at.timestamp()) / 86400.0)
    return ItemContent(category, tuple(cats), brand, len(brands) + 1, price, age, tuple(brands))


def _label_keys(e: Event) -> list[tuple[str, ...]]:
    keys: list[tuple[str, ...]] = []
    if e.request_id:
        keys.append(("r", e.request_id, e.item_id))
    keys.append(("s", e.user_id, e.session_id or "", e.item_id))
    return keys


def _impressions(events: Sequence[Event], users: Vocab, items: Vocab) -> Impressions:
    clicks: set[tuple[str, ...]] = set()
    buys: set[tuple[str, ...]] = set()
    for e in events:
        if e.type in ("click", "purchase"):
            (clicks if e.type == "click" else buys).update(_label_keys(e))
    rows = [e for e in events if e.type == "impression" and e.item_id in items]
    bought = np.asarray([any(k in buys for k in _label_keys(e)) for e in rows], dtype=np.float32)
    clicked = np.asarray([any(k in clicks for k in _label_keys(e)) for e in rows], dtype=np.float32)
    return Impressions(
        user=np.asarray([users.index(e.user_id) for e in rows], dtype=np.int64),
        item=np.asarray([items.index(e.item_id) for e in rows], dtype=np.int64),
        ts=np.asarray([int(e.ts.timestamp()) for e in rows], dtype=np.int64),
        position=np.asarray([e.position or 0 for e in rows], dtype=np.int64),
        clicked=np.maximum(clicked, bought),  # a purchase implies the item was clicked through
        purchased=bought,
    )


def load_simulator(
    events_path: Path, catalog_path: Path, positive_types: Iterable[EventType] = DEFAULT_POSITIVE_TYPES
) -> SimLog:
    """Load a simulator event log and its catalog (last update per item wins)."""
    events = sorted(read_jsonl(Path(events_path), Event), key=lambda e: e.ts)
    if not events:
        raise DataError(f"{events_path}: no events")
    catalog: dict[str, ItemUpdate] = {}
    for upd in read_jsonl(Path(catalog_path), ItemUpdate):
        catalog[upd.item_id] = upd
    users = Vocab(tuple(sorted({e.user_id for e in events})))
    items = Vocab(tuple(sorted(set(catalog) | {e.item_id for e in events})))
    wanted = set(positive_types)
    pos = [e for e in events if e.type in wanted]
    inter = Interactions.build(
        np.asarray([users.index(e.user_id) for e in pos], dtype=np.int64),
        np.asarray([items.index(e.item_id) for e in pos], dtype=np.int64),
        np.asarray([int(e.ts.timestamp()) for e in pos], dtype=np.int64),
    )
    ref_ts = events[-1].ts.timestamp()
    content = _content(items, catalog, ref_ts)
    dataset = Dataset("sim", users, items, inter, content, np.zeros((len(users), 1), np.float32), ("bias",))
    return SimLog(dataset, _impressions(events, users, items), tuple(events), catalog)
