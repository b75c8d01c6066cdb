"""The honest baseline: decayed-popular items the user has not interacted with."""

from __future__ import annotations

from collections.abc import Collection, Sequence

from streams.records import RecItem


def popular_not_seen(
    popular: Sequence[tuple[str, float]], seen: Collection[str], exclude: Collection[str], k: int
) -> list[RecItem]:
    """Top ``k`` of ``popular`` (best first) skipping seen and excluded items.

    >>> [r.item_id for r in popular_not_seen([("a", 3.0), ("b", 2.0), ("c", 1.0)], {"a"}, {"c"}, 5)]
    ['b']
    """
    out: list[RecItem] = []
    for item_id, score in popular:
        if item_id in seen or item_id in exclude:
            continue
        out.append(RecItem(item_id=item_id, position=len(out), score=score, source="popular", reason="popular_now"))
        if len(out) == k:
            break
    return out
