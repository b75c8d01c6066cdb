"""Item state: catalog fields from the items topic plus interaction counters, with Bayesian-smoothed rates."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace

import orjson

from state.errors import StateDecodeError
from state.feature_config import TYPE_INDEX, EventView
from streams.records import EVENT_TYPES, ItemUpdate

_N = len(EVENT_TYPES)


@dataclass(frozen=True, slots=True)
class ItemCounts:
    """Interaction counts of one item, in ``EVENT_TYPES`` order; also used as an increment."""

    counts: tuple[int, ...] = (0,) * _N

    def __post_init__(self) -> None:
        if len(self.counts) != _N:
            raise ValueError(f"ItemCounts needs {_N} counts {EVENT_TYPES}, got {self.counts}")

    def __add__(self, other: ItemCounts) -> ItemCounts:
        return ItemCounts(tuple(a + b for a, b in zip(self.counts, other.counts, strict=True)))

    def get(self, event_type: str) -> int:
        return self.counts[TYPE_INDEX[event_type]]

    @property
    def views(self) -> int:
        return self.counts[0]

    @property
    def clicks(self) -> int:
        return self.counts[1]

    @property
    def carts(self) -> int:
        return self.counts[2]

    @property
    def purchases(self) -> int:
        return self.counts[3]

    @property
    def impressions(self) -> int:
        return self.counts[4]


@dataclass(frozen=True, slots=True)
class RatePrior:
    """Beta priors (pseudo-successes ``a``, pseudo-failures ``b``) for click-through and conversion."""

    ctr_a: float = 1.0
    ctr_b: float = 19.0
    cvr_a: float = 1.0
    cvr_b: float = 9.0


@dataclass(frozen=True, slots=True)
class ItemRecord:
    """One catalog item and its counters; ``created_at`` is epoch seconds (UTC)."""

    item_id: str
    category: str
    brand: str = ""
    price: float = 0.0
    available: bool = True
    created_at: float = 0.0
    counts: ItemCounts = field(default_factory=ItemCounts)

    @classmethod
    def from_update(cls, upd: ItemUpdate, counts: ItemCounts | None = None) -> ItemRecord:
        """Catalog fields from an items-topic record (counters kept from ``counts``)."""
        return cls(
            upd.item_id,
            upd.category,
            upd.brand,
            upd.price,
            upd.available,
            upd.created_at.timestamp(),
            counts or ItemCounts(),
        )

    def with_counts(self, counts: ItemCounts) -> ItemRecord:
        return replace(self, counts=counts)

    def ctr(self, prior: RatePrior = RatePrior()) -> float:
        """Posterior mean click-through rate (clicks over impressions).

        >>> ItemRecord("i", "c").ctr()
        0.05
        >>> round(ItemRecord("i", "c", counts=ItemCounts((0, 9, 0, 0, 80))).ctr(), 3)
        0.1
        """
        c = self.counts
        return (c.clicks + prior.ctr_a) / (c.impressions + prior.ctr_a + prior.ctr_b)

    def conversion(self, prior: RatePrior = RatePrior()) -> float:
        """Posterior mean purchases per click.

        >>> ItemRecord("i", "c", counts=ItemCounts((0, 10, 0, 4, 0))).conversion()
        0.25
        """
        c = self.counts
        return (c.purchases + prior.cvr_a) / (c.clicks + prior.cvr_a + prior.cvr_b)

    def age_s(self, now: float) -> float:
        return max(0.0, now - self.created_at)


def count_events(events: Iterable[EventView]) -> dict[str, ItemCounts]:
    """Per-item count increments of a batch (what a worker adds to the shared counters)."""
    acc: dict[str, list[int]] = {}
    for ev in events:
        row = acc.get(ev.item_id)
        if row is None:
            row = acc[ev.item_id] = [0] * _N
        row[TYPE_INDEX[ev.type]] += 1
    return {item: ItemCounts(tuple(row)) for item, row in acc.items()}


def merge_counts(into: dict[str, ItemCounts], more: Mapping[str, ItemCounts]) -> None:
    """Add ``more`` into ``into`` in place."""
    for item, c in more.items():
        prev = into.get(item)
        into[item] = c if prev is None else prev + c


def encode_item(rec: ItemRecord) -> bytes:
    """Catalog fields as a compact JSON array (counters are stored separately)."""
    return orjson.dumps([1, rec.item_id, rec.category, rec.brand, rec.price, rec.available, rec.created_at])


def decode_item(raw: bytes, counts: ItemCounts | None = None) -> ItemRecord:
    """Inverse of :func:`encode_item`, attaching ``counts``."""
    try:
        v, item_id, category, brand, price, available, created = orjson.loads(raw)
    except (orjson.JSONDecodeError, ValueError, TypeError) as exc:
        raise StateDecodeError(f"corrupt item record: {raw[:60]!r}") from exc
    if v != 1:
        raise StateDecodeError(f"unknown item record schema {v!r}: {raw[:60]!r}")
    return ItemRecord(
        str(item_id), str(category), str(brand), float(price), bool(available), float(created), counts or ItemCounts()
    )
