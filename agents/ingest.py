"""Pure batch logic of the events agent: triage, per-user updates, idempotent store writes."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

from state.features import EventView, FeatureConfig, UserState, apply_events, encode_state, new_user_state
from state.items import ItemRecord, count_events
from state.pools import PoolConfig, covisit_pairs, covisit_update, decayed_updates
from state.popularity import popularity_increments
from state.store import WriteBatch
from streams.codec import decode_event
from streams.errors import DecodeError
from streams.records import Event
from streams.settings import ValidationSettings


@dataclass(frozen=True, slots=True)
class RawMessage:
    """A consumed message with its origin, as the agent hands it to the core."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None


@dataclass(frozen=True, slots=True)
class Decoded:
    msg: RawMessage
    event: Event


@dataclass(slots=True)
class BatchPlan:
    """What one batch changes: user states to store and mirror, store writes, dead letters."""

    users: dict[str, UserState] = field(default_factory=dict)
    encoded: dict[str, bytes] = field(default_factory=dict)
    user_partition: dict[str, int] = field(default_factory=dict)
    dead: list[tuple[DecodeError, RawMessage]] = field(default_factory=list)
    write: WriteBatch | None = None
    applied: int = 0
    duplicates: int = 0


def triage(
    msgs: Sequence[RawMessage], now: float, limits: ValidationSettings
) -> tuple[list[Decoded], list[tuple[DecodeError, RawMessage]]]:
    """Split raw messages into decoded events and dead letters (reason + origin); never raises."""
    ok: list[Decoded] = []
    dead: list[tuple[DecodeError, RawMessage]] = []
    for m in msgs:
        try:
            ok.append(Decoded(m, decode_event(m.value, now=now, limits=limits)))
        except DecodeError as exc:
            dead.append((exc, m))
    return ok, dead


def plan_batch(
    msgs: Sequence[RawMessage],
    decoded: Sequence[Decoded],
    dead: list[tuple[DecodeError, RawMessage]],
    *,
    cfg: FeatureConfig,
    pools: PoolConfig,
    states: Callable[[str], UserState | None],
    catalog: Mapping[str, ItemRecord],
    applied_offsets: Mapping[int, int],
    source: str,
) -> BatchPlan:
    """Apply a triaged batch to user states and build one idempotent store write.

    User states dedupe by event id and drop late events; shared counters (item counts, popularity, pools)
    count only the events the user state applied, and only for offsets past the store's per-partition
    watermark, so a redelivered or replayed event changes nothing twice.
    """
    plan = BatchPlan(dead=dead)
    by_user: dict[str, list[EventView]] = defaultdict(list)
    unwritten: set[int] = set()  # id() of views past the store's watermark: shared counters not written yet
    for d in decoded:
        item = catalog.get(d.event.item_id)
        view = EventView.from_event(d.event, item.category if item is not None else None)
        by_user[view.user_id].append(view)
        plan.user_partition[view.user_id] = d.msg.partition
        if d.msg.offset > applied_offsets.get(d.msg.partition, -1):
            unwritten.add(id(view))
    # Shared counters count what the user state applied (not its duplicates or late events), once per message.
    fresh: list[EventView] = []
    pairs: list[tuple[str, str, float]] = []
    for user_id, views in by_user.items():
        state = states(user_id) or new_user_state(user_id)
        before, applied = list(state.last_n), list[EventView]()
        n = apply_events(state, views, cfg, applied_out=applied)
        plan.applied += n
        plan.duplicates += len(views) - n
        plan.users[user_id] = state
        plan.encoded[user_id] = encode_state(state)
        fresh += [v for v in applied if id(v) in unwritten]
        pairs += covisit_pairs(before, applied, pools, counted=lambda v: id(v) in unwritten, last_n=cfg.last_n)
    plan.write = _write(
        source=source,
        msgs=msgs,
        applied_offsets=applied_offsets,
        users=plan.encoded,
        fresh=fresh,
        pairs=pairs,
        cfg=cfg,
        pools=pools,
    )
    return plan


def _write(
    *,
    source: str,
    msgs: Sequence[RawMessage],
    applied_offsets: Mapping[int, int],
    users: Mapping[str, bytes],
    fresh: Sequence[EventView],
    pairs: Sequence[tuple[str, str, float]],
    cfg: FeatureConfig,
    pools: PoolConfig,
) -> WriteBatch:
    """The store write of a batch: user states always, shared counters and pools for unseen offsets only."""
    ref = max((v.ts for v in fresh), default=None)
    if ref is None:
        return WriteBatch(source=source, offsets=_batch_offsets(msgs, applied_offsets), users=users)
    return WriteBatch(
        source=source,
        offsets=_batch_offsets(msgs, applied_offsets),
        users=users,
        popularity=popularity_increments(fresh, ref, cfg),
        popularity_ref=ref,
        item_counts=count_events(fresh),
        decayed=decayed_updates(fresh, ref, cfg, pools),
        covisit=covisit_update(pairs, ref, pools),
    )


def _batch_offsets(msgs: Sequence[RawMessage], applied: Mapping[int, int]) -> dict[int, int]:
    """Highest offset per partition after this batch (dead letters count as handled)."""
    out: dict[int, int] = {}
    for m in msgs:
        out[m.partition] = max(out.get(m.partition, -1), applied.get(m.partition, -1), m.offset)
    return out
