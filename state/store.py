"""The online feature store protocol and the write batch every backend applies atomically."""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np
import numpy.typing as npt

from state.item_columns import ItemColumns
from state.items import ItemCounts, ItemRecord
from state.precomputed import PrecomputedList
from state.user_state import UserState

Scored = list[tuple[str, float]]


@dataclass(frozen=True, slots=True)
class DecaySpec:
    """A shared, forward-decayed counter set (a ``popularity`` pool): its name and half-life."""

    name: str
    half_life_s: float

    def __post_init__(self) -> None:
        if self.half_life_s <= 0 or not self.name or ":" in self.name:
            raise ValueError(f"invalid decay spec {self!r}")


@dataclass(frozen=True, slots=True)
class DecayedUpdate:
    """Increments to add to a decayed pool, each ``w * 2**((ts - ref) / half_life)``."""

    spec: DecaySpec
    ref: float
    increments: Mapping[str, float]


@dataclass(frozen=True, slots=True)
class PoolUpdate:
    """Set-style pool change: upsert scores, remove members, then keep only the ``keep`` best (if set)."""

    name: str
    upserts: Mapping[str, float] = field(default_factory=dict)
    removes: Collection[str] = ()
    keep: int | None = None


@dataclass(frozen=True, slots=True)
class CovisitUpdate:
    """Decayed co-visitation increments ``{item: {other: weight relative to ref}}``, top ``spec``-K kept."""

    half_life_s: float
    top_k: int
    ref: float
    pairs: Mapping[str, Mapping[str, float]]


@dataclass(frozen=True, slots=True)
class WriteBatch:
    """Everything one consumer batch writes, applied atomically with its offsets.

    ``popularity`` holds forward-decayed increments relative to ``popularity_ref`` (see
    ``state.popularity.popularity_increments``) for the store's popularity spec.  ``items``
    replace catalog fields (their ``counts`` are ignored); counters move only through
    ``item_counts`` increments, so workers sharing an item never overwrite each other.
    """

    source: str
    offsets: Mapping[int, int] = field(default_factory=dict)
    users: Mapping[str, UserState | bytes] = field(default_factory=dict)  # bytes: already encode_state()d
    popularity: Mapping[str, float] = field(default_factory=dict)
    popularity_ref: float | None = None
    items: Mapping[str, ItemRecord] = field(default_factory=dict)
    item_counts: Mapping[str, ItemCounts] = field(default_factory=dict)
    user_vectors: Mapping[str, npt.NDArray[np.float32]] = field(default_factory=dict)
    decayed: Sequence[DecayedUpdate] = ()
    pools: Sequence[PoolUpdate] = ()
    covisit: CovisitUpdate | None = None

    def __post_init__(self) -> None:
        if self.popularity and self.popularity_ref is None:
            raise ValueError("popularity increments need popularity_ref (the time they are relative to)")
        if not self.source:
            raise ValueError("WriteBatch.source must name the input (e.g. the topic)")


class OnlineFeatureStore(Protocol):
    """Where serving reads user state, item records, popularity and candidate pools.

    Every method is a single round trip to the backend.  Backend failures raise ``StoreUnavailable``
    (unreachable) or ``StoreError``; no method retries on its own.
    """

    async def write_batch(self, batch: WriteBatch) -> None:
        """Apply all of ``batch`` atomically (all or nothing), recording per partition the highest offset.

        Counter increments are not idempotent; callers drop messages at or below
        ``applied_offsets`` so that a Kafka replay applies each message once.
        """
        ...

    async def applied_offsets(self, source: str) -> dict[int, int]:
        """Highest offset written per partition of ``source`` (empty when nothing was written)."""
        ...

    async def read_user(self, user_id: str) -> UserState | None:
        """The user's last written state, or None if never written or expired (idle TTL)."""
        ...

    async def read_user_vector(self, user_id: str) -> npt.NDArray[np.float32] | None:
        """The user's last written session embedding as float32, or None."""
        ...

    async def scan_users(self, cursor: str | None, count: int) -> tuple[str | None, list[str]]:
        """One page of the ids of users with stored state; start with ``cursor=None``, done when None comes back.

        ``count`` is a hint of how many keys to look at (a page may be empty while the cursor is not None).
        A user whose state exists for the whole scan is returned at least once (Redis may repeat one);
        users written or expiring during the scan may or may not appear. Must not block writers.
        """
        ...

    async def read_users(self, user_ids: Sequence[str]) -> list[UserState | None]:
        """States aligned with ``user_ids`` (None where never written or expired), in one round trip."""
        ...

    async def read_user_vectors(self, user_ids: Sequence[str]) -> list[npt.NDArray[np.float32] | None]:
        """Session embeddings aligned with ``user_ids`` (None where absent), in one round trip."""
        ...

    async def write_precomputed(self, lists: Sequence[PrecomputedList], ttl_s: int) -> None:
        """Replace each user's precomputed list (all or nothing, one round trip); each expires after ``ttl_s``."""
        ...

    async def read_precomputed(self, user_id: str) -> PrecomputedList | None:
        """The user's precomputed list, or None when there is none (never written, or expired)."""
        ...

    async def read_items(self, item_ids: Sequence[str]) -> list[ItemRecord | None]:
        """Records aligned with ``item_ids`` (None where the catalog has no such item), counters merged."""
        ...

    async def read_item_columns(self, item_ids: Sequence[str]) -> ItemColumns:
        """The same records as :meth:`read_items`, as columns (no per-item objects), in one round trip."""
        ...

    async def top_popular(self, n: int, now: float) -> Scored:
        """Up to ``n`` items by decayed popularity at ``now`` (events-equivalent), best first."""
        ...

    async def read_decayed(self, spec: DecaySpec, n: int, now: float) -> Scored:
        """Top ``n`` of a decayed pool at ``now``, best first (scores in events-equivalent)."""
        ...

    async def read_pool(self, name: str, n: int) -> Scored:
        """Top ``n`` of a set-style pool by score, best first."""
        ...

    async def read_pool_since(self, name: str, since: float, n: int) -> list[str]:
        """Up to ``n`` members of a set-style pool scored above ``since``, highest first, without scores:
        a log's entries newer than a cursor, at the cost of what they are."""
        ...

    async def read_covisit(self, item_ids: Sequence[str], n: int, now: float, half_life_s: float) -> list[Scored]:
        """For each of ``item_ids``, up to ``n`` co-visited items with decayed weights, best first."""
        ...

    async def ping(self) -> bool:
        """True if the backend answers; never raises."""
        ...

    async def close(self) -> None:
        """Release connections; idempotent."""
        ...
