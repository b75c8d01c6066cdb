"""Hard filters: what may never be shown (excluded, blocked, unavailable, purchased, outside the constraints)."""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from operator import attrgetter

import numpy as np
import numpy.typing as npt

from agents.funnel.candidates import Candidate, CandidateList
from state.item_columns import ItemColumns
from state.items import ItemRecord
from state.space_ids import SpaceIds
from state.user_state import UserState
from streams.records import ContextValue

#: Filter names in the order they are tried; a dropped candidate is counted under the first that rejects it.
FILTERS: tuple[str, ...] = ("exclude", "blocklist", "purchased", "seen", "unknown", "unavailable", "category", "price")
_CODE = {name: n for n, name in enumerate(FILTERS)}
_item_id = attrgetter("item_id")
I64 = npt.NDArray[np.int64]


@dataclass(frozen=True, slots=True)
class FilterConfig:
    """Start-up settings of the hard filters.

    ``seen_last_n`` > 0 also drops items among the user's last N interactions. ``drop_unknown`` drops items
    the catalog has no record of (their availability cannot be checked); when False they pass and the
    hydrator fills their features with defaults (and counts them).
    """

    blocklist: frozenset[str] = field(default_factory=frozenset)
    drop_purchased: bool = True
    seen_last_n: int = 0
    drop_unknown: bool = False

    def __post_init__(self) -> None:
        if self.seen_last_n < 0:
            raise ValueError(f"seen_last_n must be >= 0, got {self.seen_last_n}")


@dataclass(frozen=True, slots=True)
class Constraints:
    """What one request asks for: ids to exclude, one category, a price range."""

    exclude: frozenset[str] = field(default_factory=frozenset)
    category: str | None = None
    min_price: float | None = None
    max_price: float | None = None

    @classmethod
    def from_request(cls, exclude: Collection[str], context: Mapping[str, ContextValue]) -> Constraints:
        """Read ``category``, ``min_price`` and ``max_price`` from a request context (wrong types are ignored).

        >>> Constraints.from_request(["x"], {"category": "shoes", "max_price": 50, "min_price": "cheap"})
        Constraints(exclude=frozenset({'x'}), category='shoes', min_price=None, max_price=50.0)
        """
        cat = context.get("category")
        return cls(
            frozenset(exclude),
            cat if isinstance(cat, str) and cat else None,
            _number(context.get("min_price")),
            _number(context.get("max_price")),
        )


def _number(v: ContextValue | None) -> float | None:
    return float(v) if isinstance(v, int | float) and not isinstance(v, bool) else None


@dataclass(frozen=True, slots=True)
class Filtered:
    """Kept candidates with their records (aligned columns; iterating gives records), and drops per filter."""

    kept: Sequence[Candidate]
    records: ItemColumns
    dropped: dict[str, int]
    index: I64 | None = None  # where each kept candidate was among those filtered


def _constraint_failures(cols: ItemColumns, cons: Constraints, reason: I64) -> None:
    # without a record neither category nor price can be confirmed, so a constrained request drops it
    open_ = reason < 0
    if cons.category is not None:
        wrong = ~cols.known | (np.asarray(cols.category, dtype=object) != cons.category)
        reason[open_ & wrong] = _CODE["category"]
        open_ = reason < 0
    if cons.min_price is None and cons.max_price is None:
        return
    out = ~cols.known
    if cons.min_price is not None:
        out |= cols.price < cons.min_price
    if cons.max_price is not None:
        out |= cols.price > cons.max_price
    reason[open_ & out] = _CODE["price"]


def banned_ids(state: UserState | None, cons: Constraints, cfg: FilterConfig) -> dict[str, str]:
    """Item id -> the first id-based filter that bans it (exclude, blocklist, purchased, seen)."""
    banned: dict[str, str] = {}
    if state is not None:
        if cfg.seen_last_n:
            banned.update((item, "seen") for _, _, item in state.last_n[-cfg.seen_last_n :])
        if cfg.drop_purchased:
            banned.update((item, "purchased") for item in state.purchased)
    banned.update((item, "blocklist") for item in cfg.blocklist)
    banned.update((item, "exclude") for item in cons.exclude)
    return banned


def _banned_reasons(ids: Sequence[str], banned: dict[str, str]) -> I64:
    """The filter code banning each of ``ids`` (-1: none); candidates held as positions are matched by them."""
    reason = np.full(len(ids), -1, dtype=np.int64)
    if not banned:
        return reason
    where = ids.index_in(list(banned)) if isinstance(ids, SpaceIds) else None
    if where is not None:
        codes = np.fromiter(map(_CODE.__getitem__, banned.values()), np.int64, len(banned))
        hit = where >= 0
        reason[hit] = codes[where[hit]]
        return reason
    at = dict(zip(ids, range(len(ids)), strict=True))
    if len(at) == len(ids):  # unique ids (merged candidates): find the few banned ones among them
        for item, why in banned.items():
            if (j := at.get(item)) is not None:
                reason[j] = _CODE[why]
    else:
        reason[:] = [_CODE[r] if (r := banned.get(i)) is not None else -1 for i in ids]
    return reason


def apply_filters(
    cands: Sequence[Candidate],
    records: Sequence[ItemRecord | None] | ItemColumns,
    state: UserState | None,
    cons: Constraints,
    cfg: FilterConfig,
) -> Filtered:
    """Keep the candidates no filter rejects, in order; ``records`` is aligned with ``cands``.

    Vectorised: one dictionary lookup per candidate for the id-based filters, numpy masks for the rest.

    >>> from state.items import ItemRecord as R
    >>> cs = [Candidate(i, ("popular",), (n,), 1.0) for n, i in enumerate("abcd")]
    >>> recs = [R("a", "x"), R("b", "x", available=False), R("c", "y", price=99.0), None]
    >>> out = apply_filters(cs, recs, None, Constraints(frozenset({"d"}), max_price=50.0), FilterConfig())
    >>> [c.item_id for c in out.kept], out.dropped
    (['a'], {'exclude': 1, 'unavailable': 1, 'price': 1})
    """
    ids = cands.ids if isinstance(cands, CandidateList) else list(map(_item_id, cands))
    cols = records if isinstance(records, ItemColumns) else ItemColumns.from_records(ids, records)
    reason = _banned_reasons(ids, banned_ids(state, cons, cfg))
    open_ = reason < 0
    if cfg.drop_unknown:
        reason[open_ & ~cols.known] = _CODE["unknown"]
    reason[(reason < 0) & cols.known & ~cols.available] = _CODE["unavailable"]
    _constraint_failures(cols, cons, reason)
    keep = np.flatnonzero(reason < 0)
    counts = np.bincount(reason[reason >= 0], minlength=len(FILTERS))
    rows = keep.tolist()
    return Filtered(
        cands.take(rows) if isinstance(cands, CandidateList) else [cands[j] for j in rows],
        cols.take(keep),
        {f: int(counts[n]) for n, f in enumerate(FILTERS) if counts[n]},
        keep,
    )
