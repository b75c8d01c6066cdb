"""Shadow mode: the diff maths, sampling, and a challenger scored beside the champion inside a runtime."""

from __future__ import annotations

import numpy as np
import pytest
from prometheus_client import CollectorRegistry
from scipy.stats import spearmanr

from agents.runtime import Runtime
from agents.serve import answer, answer_and_shadow
from agents.shadow import ShadowJob, ShadowScorer, overlap_at_k, sampled, shadow_diff, spearman, top_k
from state.items import ItemRecord
from state.memory_store import MemoryFeatureStore
from state.registry import FileRegistry, warm_up
from streams.clock import FakeClock
from streams.records import RecommendRequest, ShadowRecord
from streams.settings import Settings, load_settings

T0 = 1_790_000_000.0


def test_top_k_is_stable_on_ties_and_overlap_counts_short_lists() -> None:
    assert top_k(np.array([1.0, 3.0, 3.0, 2.0, 3.0]), 3).tolist() == [1, 2, 4]
    assert overlap_at_k(np.array([0, 1]), np.array([1, 0]), 10) == 1.0  # two candidates: all of them agree
    assert overlap_at_k(np.array([0, 1, 2, 3]), np.array([3, 2, 1, 0]), 2) == 0.0
    assert overlap_at_k(np.array([], np.int64), np.array([], np.int64), 5) == 1.0


def test_spearman_matches_scipy_with_ties() -> None:
    rng = np.random.default_rng(3)
    a = rng.integers(0, 8, 200).astype(np.float64)  # many ties
    b = a + rng.normal(0, 3, 200)
    rho = spearman(a, b)
    assert rho is not None and rho == pytest.approx(spearmanr(a, b).statistic, abs=1e-12)
    assert 0.3 < rho < 0.95


def test_identical_models_agree_fully_and_reversed_ones_disagree() -> None:
    v = np.linspace(0.0, 1.0, 50)
    same = shadow_diff(v, v.copy(), 10)
    assert (same.overlap, same.correlation, same.mean_abs_delta) == (1.0, pytest.approx(1.0), 0.0)
    assert same.deltas.tolist() == [0.0] * 10 and same.champion_top.tolist() == list(range(49, 39, -1))
    rev = shadow_diff(v, 1.0 - v, 10)
    assert rev.overlap == 0.0 and rev.correlation == pytest.approx(-1.0)
    assert rev.deltas[0] == pytest.approx(-1.0)  # the champion's best is the challenger's worst
    with pytest.raises(ValueError, match="differ in shape"):
        shadow_diff(v, v[:3], 3)


def test_sampling_is_stable_per_request_and_near_its_share() -> None:
    ids = [f"c{i}" for i in range(20_000)]
    share = sum(sampled(c, 0.3) for c in ids) / len(ids)
    assert abs(share - 0.3) < 0.015
    assert [sampled(c, 0.3) for c in ids[:50]] == [sampled(c, 0.3) for c in ids[:50]]


def shadow_runtime(registry: FileRegistry, **models: object) -> Runtime:
    registry.promote("v0001")
    arms = [{"name": "champ", "share": 0.5}, {"name": "pinned", "share": 0.5, "model_version": "v0002"}]
    settings: Settings = load_settings(
        worker={"store": "memory"},
        models={"registry_dir": registry.root, "shadow_version": "v0002", **models},
        experiments={"active": [{"name": "m", "variants": arms}]},
        serving={"epsilon": 0.0},
    )
    clock = FakeClock(T0)
    v2 = registry.load("v0002")
    warm_up(v2)
    rt = Runtime(
        settings=settings,
        store=MemoryFeatureStore(clock=clock),
        clock=clock,
        versions={"v0002": v2},
        registry=CollectorRegistry(),
    )
    champion = registry.load("v0001")
    rt.use_model(champion)
    for j, item in enumerate(champion.item_ids):
        rt.catalog[item] = ItemRecord(item, category=f"c{j % 3}", price=5.0 + j, created_at=T0 - 86_400)
    rt.popular = [(item, 100.0 - j) for j, item in enumerate(champion.item_ids)]
    return rt


async def test_a_copy_of_the_champion_in_shadow_agrees_and_pinned_arms_report_their_version(
    tiny_registry: FileRegistry,
) -> None:
    rt = shadow_runtime(tiny_registry)
    assert rt.shadow_version == "v0002" and rt.shadow is not None and rt.shadow.embed is not None
    sent: list[ShadowRecord] = []

    async def send(record: ShadowRecord) -> None:
        sent.append(record)

    scorer = ShadowScorer(lambda: ("v0002", rt.shadow) if rt.shadow else None, send, rt.metrics, k=5, capacity=4)
    served: dict[str, str] = {}
    for i in range(12):
        req = RecommendRequest(correlation_id=f"c{i}", user_id=f"u{i}", k=5)
        response, _, job = await answer_and_shadow(rt, req, T0)
        served[response.variant] = response.model_version
        assert job is not None and len(job.kept.kept) == len(rt.popular)
        await scorer.score(job)
    assert served == {"m:champ": "v0001", "m:pinned": "v0002"}
    response, impression = await answer(rt, RecommendRequest(correlation_id="c-x", user_id="u3", k=5), T0)
    assert impression.model_version == response.model_version == served[response.variant]
    assert len(sent) == 12 and scorer.scored == 12
    rec = sent[0]
    assert (rec.champion_version in ("v0001", "v0002"), rec.challenger_version, rec.k) == (True, "v0002", 5)
    # v0002 is v0001 published again: the same weights rank the same candidates the same way.
    assert all(r.overlap_at_k == 1.0 and r.champion_top == r.challenger_top for r in sent)
    assert all(r.rank_correlation == pytest.approx(1.0) and r.mean_abs_delta < 1e-6 for r in sent)
    assert rec.n_candidates == len(rt.popular) and len(rec.score_deltas) == 5
    labels = {"agent": "streamrec"}
    assert rt.registry.get_sample_value("streamrec_shadow_overlap_count", labels) == 12.0
    assert rt.registry.get_sample_value("streamrec_shadow_overlap_bucket", {**labels, "le": "0.99"}) == 0.0
    assert rt.registry.get_sample_value("streamrec_shadow_total", {**labels, "outcome": "scored"}) == 12.0


async def test_a_full_queue_drops_jobs_and_counts_them(tiny_registry: FileRegistry) -> None:
    rt = shadow_runtime(tiny_registry, shadow_queue=2)

    async def send(record: ShadowRecord) -> None:
        raise AssertionError("not started: nothing is sent")

    scorer = ShadowScorer(lambda: None, send, rt.metrics, k=5, capacity=2)
    req = RecommendRequest(correlation_id="c1", user_id="u1", k=5)
    _, _, job = await answer_and_shadow(rt, req, T0)
    assert isinstance(job, ShadowJob)
    assert [scorer.submit(job) for _ in range(4)] == [True, True, False, False]
    value = rt.registry.get_sample_value("streamrec_shadow_total", {"agent": "streamrec", "outcome": "dropped"})
    assert value == 2.0
    assert await scorer.score(job) is None  # no challenger loaded any more: nothing to compare


async def test_unsampled_requests_and_unranked_answers_make_no_job(tiny_registry: FileRegistry) -> None:
    rt = shadow_runtime(tiny_registry, shadow_sample=0.0)
    _, _, job = await answer_and_shadow(rt, RecommendRequest(correlation_id="c1", user_id="u1", k=5), T0)
    assert job is None
    rt = shadow_runtime(tiny_registry)
    rt.use_model(None)  # the champion was retired: its answer is unranked, so there is nothing to compare
    user = next(u for u in (f"u{i}" for i in range(50)) if rt.arm_for(u).pinned is None)
    response, _, job = await answer_and_shadow(rt, RecommendRequest(correlation_id="c2", user_id=user, k=5), T0)
    assert job is None and response.model_version == "none" and response.fallback
