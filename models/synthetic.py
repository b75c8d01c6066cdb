"""A small seeded generator of catalog and event records with known structure, for tests and smoke runs."""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np

from streams.records import Event, ItemUpdate

_EPOCH = datetime(2024, 1, 1, tzinfo=UTC)


@dataclass(frozen=True)
class SyntheticWorld:
    """Generated records plus the hidden truth they came from."""

    catalog: tuple[ItemUpdate, ...]
    events: tuple[Event, ...]
    user_taste: np.ndarray  # [n_users, n_categories] preference weights
    item_category: np.ndarray  # [n_items] category index


def _catalog(rng: np.random.Generator, n_items: int, n_categories: int) -> tuple[list[ItemUpdate], np.ndarray]:
    cats = rng.integers(0, n_categories, n_items)
    items = [
        ItemUpdate(
            item_id=f"i{i}",
            category=f"c{cats[i]}",
            brand=f"b{rng.integers(0, 5)}",
            price=float(np.round(rng.lognormal(3.0, 0.8), 2)),
            created_at=_EPOCH - timedelta(days=float(rng.uniform(0, 365))),
        )
        for i in range(n_items)
    ]
    return items, cats


def generate(
    seed: int, *, n_users: int = 60, n_items: int = 80, n_categories: int = 5, requests_per_user: int = 12,
    slate: int = 8,
) -> SyntheticWorld:
    """Users prefer a few categories; they click shown items by taste and position, and buy cheaper ones more.

    Each request shows ``slate`` items (``impression`` events with position and request id); clicks and
    purchases carry the same request id. The same seed always yields the same records.
    """
    rng = np.random.default_rng(seed)
    catalog, cats = _catalog(rng, n_items, n_categories)
    taste = rng.dirichlet(np.full(n_categories, 0.3), n_users)
    events: list[Event] = []
    t = _EPOCH
    for r in range(n_users * requests_per_user):
        u = int(rng.integers(0, n_users))
        t += timedelta(seconds=float(rng.exponential(30.0)))
        shown = rng.choice(n_items, size=slate, replace=False)
        for pos, i in enumerate(shown.tolist()):
            common = {"user_id": f"u{u}", "item_id": f"i{i}", "session_id": f"s{u}", "request_id": f"r{r}"}
            events.append(Event(event_id=f"e{len(events)}", type="impression", ts=t, position=pos, **common))
            logit = 4.0 * taste[u, cats[i]] - 0.35 * pos - 1.6
            if rng.random() < 1.0 / (1.0 + math.exp(-logit)):
                ts = t + timedelta(seconds=1 + pos)
                events.append(Event(event_id=f"e{len(events)}", type="click", ts=ts, **common))
                buy = 1.0 / (1.0 + math.exp(-(1.5 - 0.06 * catalog[i].price + 2.0 * taste[u, cats[i]])))
                if rng.random() < buy:
                    ts = ts + timedelta(seconds=5)
                    price = catalog[i].price
                    events.append(Event(event_id=f"e{len(events)}", type="purchase", ts=ts, price=price, **common))
    return SyntheticWorld(tuple(catalog), tuple(events), taste, cats)


def write_jsonl(world: SyntheticWorld, events_path: Path, catalog_path: Path) -> None:
    """Write the world as the simulator would: one JSON record per line."""
    events_path.write_text("".join(e.model_dump_json() + "\n" for e in world.events), encoding="utf-8")
    catalog_path.write_text("".join(c.model_dump_json() + "\n" for c in world.catalog), encoding="utf-8")
