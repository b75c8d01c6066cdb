"""Shared decayed popularity: forward-decayed increments that commute across workers, kept per generation.

A generation spans ``GENERATION_HALF_LIVES`` half-lives; its scores are stored relative to its start
(its epoch), so no weight exceeds ``2**GENERATION_HALF_LIVES``.  Each increment is added to the
generation of the batch and to the next one, so the next generation already holds all recent mass
when it becomes current (older mass has decayed below ``2**-GENERATION_HALF_LIVES``): that is the
renormalisation, done without a rewrite or any coordination between workers.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

from state.decay import forward_weight
from state.feature_config import TYPE_INDEX, EventView, FeatureConfig

GENERATION_HALF_LIVES = 64


def period_s(half_life_s: float) -> float:
    """Length of one generation in seconds."""
    return GENERATION_HALF_LIVES * half_life_s


def generation(ts: float, half_life_s: float) -> int:
    """The generation that holds time ``ts``.

    >>> generation(0.0, 1.0), generation(63.9, 1.0), generation(64.0, 1.0)
    (0, 0, 1)
    """
    return math.floor(ts / period_s(half_life_s))


def epoch(gen: int, half_life_s: float) -> float:
    """Start time of generation ``gen`` (the reference of its stored scores)."""
    return gen * period_s(half_life_s)


def popularity_increments(events: Iterable[EventView], ref: float, cfg: FeatureConfig) -> dict[str, float]:
    """Per-item weighted, forward-decayed increments relative to ``ref`` (use the batch's newest time).

    >>> cfg = FeatureConfig(popularity_half_life_s=60.0)
    >>> ev = EventView("e", "click", "u", "i", 0.0, None, None, None)
    >>> popularity_increments([ev], 60.0, cfg)
    {'i': 1.0}
    """
    hl = cfg.popularity_half_life_s
    out: dict[str, float] = {}
    for ev in events:
        w = cfg.popularity_weights[TYPE_INDEX[ev.type]]
        if w:
            out[ev.item_id] = out.get(ev.item_id, 0.0) + w * forward_weight(ev.ts, ref, hl)
    return out


#: Increments reach the next generation only in the last this-many half-lives of the current one: mass
#: added earlier has decayed below ``2**-HANDOFF_HALF_LIVES`` of itself by the time the next one is read,
#: so leaving it out changes no ranking, and it halves the writes of every decayed counter.
HANDOFF_HALF_LIVES = 16


def generation_scales(ref: float, half_life_s: float) -> list[tuple[int, float]]:
    """``(generation, factor)`` pairs: multiply increments relative to ``ref`` by ``factor`` to add them there.

    >>> generation_scales(10.0, 1.0)
    [(0, 1024.0)]
    >>> generation_scales(60.0, 1.0)[1][1] == 2.0 ** (60 - 64)
    True
    """
    g = generation(ref, half_life_s)
    gens = [g]
    if ref - epoch(g, half_life_s) >= (GENERATION_HALF_LIVES - HANDOFF_HALF_LIVES) * half_life_s:
        gens.append(g + 1)
    return [(k, forward_weight(ref, epoch(k, half_life_s), half_life_s)) for k in gens]


def score_now(stored: float, gen: int, now: float, half_life_s: float) -> float:
    """Events-equivalent value at ``now`` of a score stored in generation ``gen``.

    >>> score_now(1024.0, 0, 10.0, 1.0)
    1.0
    """
    return stored * forward_weight(epoch(gen, half_life_s), now, half_life_s)
