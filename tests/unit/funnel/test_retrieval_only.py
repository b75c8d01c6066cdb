"""A version without a ranker serves in its two-tower score order (what offline evaluation ranks by)."""

from __future__ import annotations

import numpy as np
import pytest
from funnel_world import CFG, T0, all_sources, build_world

from agents.funnel.config import FunnelConfig
from agents.funnel.filters import FilterConfig
from agents.funnel.ordering import OrderingConfig
from agents.funnel.pipeline import Funnel
from streams.records import RecommendRequest


async def test_retrieval_only_version_ranks_every_candidate_by_the_two_tower_score() -> None:
    w = await build_world()
    cfg = FunnelConfig(ordering=OrderingConfig(mmr_lambda=1.0), filters=FilterConfig(seen_last_n=3))
    funnel = Funnel(cfg, w.store, all_sources(w), vectors=w.vectors, features=CFG, ranker=None)
    req = RecommendRequest(correlation_id="c1", user_id="u1", k=10, exclude=["i30"])
    res = await funnel.run(req, w.state, now=T0)
    assert not res.fallback and "score" in res.stage_ms and len(res.items) == 10
    user = (w.vectors.vectors[5] + w.vectors.vectors[9]).astype(np.float16).astype(np.float32)  # stored as float16
    dots = {item: float(w.vectors.vectors[j] @ user) for j, item in enumerate(w.vectors.ids)}
    assert [r.score for r in res.items] == pytest.approx([dots[r.item_id] for r in res.items], rel=1e-6)
    banned = {"i30", "i13", "i05", "i09"} | {i for i, r in w.items.items() if not r.available}
    allowed = sorted((i for i in dots if i not in banned), key=lambda i: -dots[i])
    # the ANN source returns its 30 nearest; with the other sources' candidates, the top 10 is the global top 10
    assert [r.item_id for r in res.items] == allowed[:10]
    assert all(r.p_click is None and r.value is None for r in res.items)


async def test_without_a_session_vector_it_still_falls_back_to_retrieval_order() -> None:
    w = await build_world()
    funnel = Funnel(FunnelConfig(), w.store, all_sources(w), vectors=w.vectors, features=CFG, ranker=None)
    res = await funnel.run(RecommendRequest(correlation_id="c2", user_id="nobody", k=5), None, now=T0)
    assert res.fallback and "no_ranker" in res.degraded and len(res.items) == 5
