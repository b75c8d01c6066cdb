"""Exponential time decay: plain decay factors and forward decay with a movable reference time.

Forward decay stores each contribution as ``w * 2**((ts - ref) / half_life)``; sums of such
weights commute (any worker can add in any order) and the value "now" is the stored sum times
``2**((ref - now) / half_life)``.  When weights grow large the reference moves forward and the
stored sums are scaled down once (renormalisation), which changes no decayed value.
"""

from __future__ import annotations

import math

#: Renormalise once the newest contribution would weigh more than 2**RENORM_EXPONENT.
RENORM_EXPONENT = 32.0


def decay_factor(age_s: float, half_life_s: float) -> float:
    """Weight left after ``age_s`` seconds.

    >>> decay_factor(3600.0, 3600.0)
    0.5
    >>> decay_factor(0.0, 10.0)
    1.0
    """
    return math.exp2(-age_s / half_life_s)


def forward_weight(ts: float, ref: float, half_life_s: float) -> float:
    """Forward-decay weight of an event at ``ts`` relative to reference time ``ref``.

    >>> forward_weight(7200.0, 0.0, 3600.0)
    4.0
    >>> forward_weight(0.0, 7200.0, 3600.0)
    0.25
    """
    return math.exp2((ts - ref) / half_life_s)


def value_at(stored: float, ref: float, now: float, half_life_s: float) -> float:
    """Decayed value at ``now`` of a forward-decayed sum kept relative to ``ref``.

    Two events one half-life apart, read one half-life after the second:

    >>> s = forward_weight(0.0, 0.0, 60.0) + forward_weight(60.0, 0.0, 60.0)
    >>> value_at(s, 0.0, 120.0, 60.0)
    0.75
    """
    return stored * math.exp2((ref - now) / half_life_s)


def rebase_factor(old_ref: float, new_ref: float, half_life_s: float) -> float:
    """Multiply sums stored relative to ``old_ref`` by this to store them relative to ``new_ref``.

    >>> rebase_factor(0.0, 120.0, 60.0)
    0.25
    """
    return math.exp2((old_ref - new_ref) / half_life_s)


def aligned_ref(ts: float, half_life_s: float) -> float:
    """A reference time at a whole number of half-lives at or before ``ts`` (stable across workers).

    >>> aligned_ref(250.0, 100.0)
    200.0
    """
    return math.floor(ts / half_life_s) * half_life_s


def needs_rebase(ts: float, ref: float, half_life_s: float) -> bool:
    """True when a contribution at ``ts`` would weigh more than ``2**RENORM_EXPONENT``.

    >>> needs_rebase(100.0 * 3600, 0.0, 3600.0), needs_rebase(10.0 * 3600, 0.0, 3600.0)
    (True, False)
    """
    return (ts - ref) / half_life_s > RENORM_EXPONENT
