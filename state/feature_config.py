"""Inputs of the user-feature core: the tunables (``FeatureConfig``) and the flattened event (``EventView``)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from streams.records import EVENT_TYPES, Event
from streams.settings import FeatureSettings

#: Index of each event type in count vectors (the order of ``EVENT_TYPES``).
TYPE_INDEX: dict[str, int] = {t: i for i, t in enumerate(EVENT_TYPES)}
IMPRESSION = TYPE_INDEX["impression"]
#: Types that show the user engaged with an item (an impression followed by one of these is not negative).
ENGAGED = frozenset({TYPE_INDEX["click"], TYPE_INDEX["add_to_cart"], TYPE_INDEX["purchase"]})

HOUR_S = 3600.0
DAY_S = 24 * HOUR_S


@dataclass(frozen=True, slots=True)
class FeatureConfig:
    """Tunables of user and item features; a superset of ``FeatureSettings`` (see :meth:`from_settings`).

    Late-event rule: an event is applied only if its id is not remembered and its time is no more
    than ``lateness_s`` behind the user's newest event and after the newest forgotten id; otherwise
    it is a duplicate or late and is ignored (``apply_events`` does not count it).
    """

    last_n: int = 20
    dedupe_ring: int = 64
    lateness_s: float = 60.0
    popularity_half_life_s: float = 6 * HOUR_S
    affinity_half_life_s: float = 3 * DAY_S
    max_categories: int = 8
    max_impressions: int = 12
    max_purchased: int = 16
    negative_grace_s: float = 30.0
    session_gap_s: float = 30 * 60.0
    idle_ttl_s: float = 7 * DAY_S
    #: Affinity weight per event type, in ``EVENT_TYPES`` order (view, click, add_to_cart, purchase, impression).
    affinity_weights: tuple[float, ...] = (1.0, 2.0, 4.0, 8.0, 0.0)
    #: Popularity weight per event type, in ``EVENT_TYPES`` order.
    popularity_weights: tuple[float, ...] = (1.0, 2.0, 3.0, 5.0, 0.0)

    def __post_init__(self) -> None:
        n = len(EVENT_TYPES)
        if len(self.affinity_weights) != n or len(self.popularity_weights) != n:
            raise ValueError(f"weights need one value per event type {EVENT_TYPES}")
        if min(self.last_n, self.dedupe_ring, self.max_categories, self.max_impressions, self.max_purchased) < 1:
            raise ValueError(f"bounds must be >= 1: {self}")
        if min(self.lateness_s, self.popularity_half_life_s, self.affinity_half_life_s, self.session_gap_s) <= 0:
            raise ValueError(f"durations must be > 0: {self}")
        if self.lateness_s > 16_000:  # the codec stores ring times in 24 bits of milliseconds
            raise ValueError(f"lateness_s must be <= 16000, got {self.lateness_s}")

    @classmethod
    def from_settings(cls, settings: FeatureSettings, **overrides: Any) -> FeatureConfig:
        """Build from the settings tree; ``overrides`` set fields the settings do not have yet."""
        base: dict[str, Any] = {
            "last_n": settings.last_n,
            "dedupe_ring": settings.dedupe_ring,
            "popularity_half_life_s": settings.popularity_half_life_s,
        }
        base.update(overrides)
        return cls(**base)


@dataclass(frozen=True, slots=True)
class EventView:
    """A decoded event flattened for the hot path; ``ts`` is epoch seconds (UTC)."""

    event_id: str
    type: str
    user_id: str
    item_id: str
    ts: float
    session_id: str | None
    price: float | None
    category: str | None
    position: int | None = None
    request_id: str | None = None

    @classmethod
    def from_event(cls, ev: Event, category: str | None) -> EventView:
        """Flatten ``ev``; ``category`` comes from the item catalog (None when the item is unknown)."""
        return cls(
            event_id=ev.event_id,
            type=ev.type,
            user_id=ev.user_id,
            item_id=ev.item_id,
            ts=ev.ts.timestamp(),
            session_id=ev.session_id,
            price=ev.price,
            category=category,
            position=ev.position,
            request_id=ev.request_id,
        )
