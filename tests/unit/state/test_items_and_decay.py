"""Item counters and rates, popularity generations, vectors and keys."""

from __future__ import annotations

import numpy as np
import pytest

from state.decay import aligned_ref, decay_factor, forward_weight, value_at
from state.errors import StateDecodeError, StoreError, StoreUnavailable
from state.feature_config import EventView, FeatureConfig
from state.items import ItemCounts, ItemRecord, RatePrior, count_events, decode_item, encode_item, merge_counts
from state.keys import KeySchema
from state.popularity import epoch, generation, generation_scales, popularity_increments, score_now
from state.vectors import decode_vector, encode_vector
from streams.errors import InfraError, StreamrecError

T0 = 1_700_000_000.0


def test_counts_and_rates_with_priors() -> None:
    evs = [
        EventView(f"e{i}", t, "u", "a", T0, None, None, None)
        for i, t in enumerate(["impression"] * 10 + ["click"] * 2 + ["purchase"])
    ]
    counts = count_events(evs)
    assert counts["a"] == ItemCounts((0, 2, 0, 1, 10))
    acc: dict[str, ItemCounts] = {}
    merge_counts(acc, counts)
    merge_counts(acc, counts)
    rec = ItemRecord("a", "c", counts=acc["a"])
    assert (rec.counts.impressions, rec.counts.clicks, rec.counts.purchases) == (20, 4, 2)
    assert rec.ctr() == pytest.approx(5 / 40)
    assert rec.conversion(RatePrior(cvr_a=0.0, cvr_b=0.0)) == pytest.approx(0.5)
    assert ItemRecord("b", "c").conversion() == pytest.approx(0.1)
    with pytest.raises(ValueError):
        ItemCounts((1, 2))


def test_item_codec() -> None:
    rec = ItemRecord("a", "c", "b", 1.5, False, T0, ItemCounts((1, 1, 1, 1, 1)))
    assert decode_item(encode_item(rec), rec.counts) == rec
    assert decode_item(encode_item(rec)).counts == ItemCounts()
    with pytest.raises(StateDecodeError):
        decode_item(b"[9]")


def test_decay_math() -> None:
    assert decay_factor(7200, 3600) == 0.25
    assert value_at(forward_weight(T0, aligned_ref(T0, 60), 60), aligned_ref(T0, 60), T0 + 60, 60) == pytest.approx(0.5)


def test_popularity_generations() -> None:
    hl = 3600.0
    g = generation(T0, hl)
    assert epoch(g, hl) <= T0 < epoch(g + 1, hl)
    late = epoch(g + 1, hl) - 2 * hl  # near the end of a generation increments also go to the next one
    (g0, s0), (g1, s1) = generation_scales(late, hl)
    assert (g0, g1) == (g, g + 1)
    assert score_now(s0, g0, late, hl) == pytest.approx(1.0) and score_now(s1, g1, late, hl) == pytest.approx(1.0)
    early = epoch(g, hl) + 2 * hl  # early on, the next generation would only get negligible mass
    assert [gen for gen, _ in generation_scales(early, hl)] == [g]
    inc = popularity_increments(
        [EventView("e", "purchase", "u", "a", T0 - hl, None, None, None)], T0, FeatureConfig(popularity_half_life_s=hl)
    )
    assert inc == {"a": pytest.approx(2.5)}


def test_vectors() -> None:
    v = np.array([0.1, -2.0, 3.5], dtype=np.float32)
    assert len(encode_vector(v)) == 1 + 3 * 2
    np.testing.assert_allclose(decode_vector(encode_vector(v)), v, rtol=1e-3)
    np.testing.assert_array_equal(decode_vector(encode_vector(v, "float32")), v)
    for bad in (b"", b"x12", b"h123"):
        with pytest.raises(StateDecodeError):
            decode_vector(bad)


def test_keys_and_errors() -> None:
    k = KeySchema("sr")
    assert (k.user("u"), k.item("i"), k.decayed("popular", 3), k.covisit(3, "i"), k.offsets("events")) == (
        "sr:v1:u:u",
        "sr:v1:i:i",
        "sr:v1:dp:popular:3",
        "sr:v1:cv:3:i",
        "sr:v1:off:events",
    )
    assert issubclass(StoreUnavailable, StoreError) and issubclass(StoreUnavailable, InfraError)
    assert issubclass(StateDecodeError, StreamrecError)
