"""The funnel: retrieval, hard filters, hydration, value scoring and ordering composed with timings and degradation."""

from __future__ import annotations

import asyncio
import time
import zlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from operator import attrgetter

import numpy as np
import numpy.typing as npt

from agents.funnel.candidates import (
    Candidate,
    CandidateList,
    CandidateSource,
    Merged,
    RetrievalContext,
    Scored,
    merge_ranked,
)
from agents.funnel.config import FunnelConfig
from agents.funnel.embeddings import Gathered, ItemVectors, gathered_dots, session_dots, two_tower_values
from agents.funnel.errors import RankerError
from agents.funnel.filters import Constraints, Filtered, apply_filters
from agents.funnel.hydrate import HydrationPlan, hydrate
from agents.funnel.ordering import (
    Knobs,
    Slate,
    category_codes,
    epsilon_greedy,
    explore_pool,
    greedy_slate,
    mmr,
    resolve_knobs,
)
from agents.funnel.outcome import FunnelResult, slate_items
from agents.funnel.precomputed import PrecomputedTier, filter_precomputed, tier_result, top_up
from agents.funnel.rows import CandidateRows
from agents.funnel.run_log import RunLog
from agents.funnel.scoring import Ranker
from agents.funnel.sources import StaticSource, strongest_categories
from agents.funnel.thompson import SourcePosteriors, thompson_slate
from state.feature_config import FeatureConfig
from state.features import category_affinity
from state.item_columns import ItemColumns
from state.items import ItemRecord
from state.store import OnlineFeatureStore
from state.user_state import UserState
from streams.errors import StreamrecError
from streams.records import RecommendRequest

F32 = npt.NDArray[np.float32]
F64 = npt.NDArray[np.float64]
I64 = npt.NDArray[np.int64]
Embed = Callable[[UserState], F32 | None]


@dataclass(frozen=True)
class _Scored:
    values: F64
    p_click: F32 | None
    p_purchase: F32 | None
    features: F32


class Funnel:
    """Composes the stages; holds no per-request state, so one instance serves every request of a worker.

    ``ranker`` and ``plan`` come from the registry's champion (``set_model`` swaps them, ``None`` removes
    the model); ``vectors`` are the item embeddings of the same version (two-tower feature and MMR);
    ``catalog`` is the worker's local item table, read when the store cannot answer; ``posteriors`` are the
    worker's click/impression counts per source that Thompson sampling draws from. ``embed`` computes the
    session vector from the user's state (a version other than the champion: the store holds the champion's).
    ``index_ids`` is the id list the ANN source searches: the item-vector row of each position is found once.
    """

    def __init__(
        self,
        config: FunnelConfig,
        store: OnlineFeatureStore,
        sources: Sequence[CandidateSource],
        *,
        ranker: Ranker | None = None,
        plan: HydrationPlan | None = None,
        vectors: ItemVectors | None = None,
        features: FeatureConfig | None = None,
        catalog: Mapping[str, ItemRecord] | None = None,
        posteriors: SourcePosteriors | None = None,
        timer: Callable[[], float] = time.perf_counter,
        embed: Embed | None = None,
        index_ids: Sequence[str] | None = None,
    ) -> None:
        self.config, self.store, self.sources = config, store, list(sources)
        self.embed = embed
        self.posteriors = posteriors if posteriors is not None else SourcePosteriors()
        self.features = features or FeatureConfig()
        self.catalog = catalog if catalog is not None else {}
        self.timer = timer
        self.rows = CandidateRows(self.catalog, index_ids)  # item-vector rows are translated for it up front
        self.set_model(ranker, plan, vectors)

    def set_model(
        self, ranker: Ranker | None, plan: HydrationPlan | None = None, vectors: ItemVectors | None = None
    ) -> None:
        """Swap the model (``ranker=None``: serve in retrieval order with ``fallback`` set)."""
        self.ranker, self.plan, self.vectors = ranker, plan or HydrationPlan.serving(), vectors
        self.rows.use_vectors(vectors)

    async def run(
        self,
        request: RecommendRequest,
        state: UserState | None,
        *,
        now: float,
        budget_ms: float | None = None,
        fallback_items: Sequence[tuple[str, float]] = (),
        rng: np.random.Generator | None = None,
        user_vectors: Mapping[str, F32] | None = None,
    ) -> FunnelResult:
        """Answer ``request`` for a user in ``state`` (None: new user) at wall-clock ``now``.

        ``budget_ms`` is what is left of the request's deadline; ``fallback_items`` (the worker's cached
        popular list) is served when every source fails or is empty. ``user_vectors``, when given, holds the
        session embeddings read beforehand (batch scoring): the store is not asked. Never raises for store
        or model failures: those degrade the answer and are named in ``degraded``.
        """
        run = RunLog(self.timer, self.timer(), budget_ms)
        cons = Constraints.from_request(request.exclude, request.context)
        knobs = resolve_knobs(request.k, request.context, self.config.ordering)
        why = self._precomputed_reason(run)
        tier = await self._precomputed(request.user_id, state, cons, run) if why else None
        if why and tier is not None and len(tier.kept.kept) >= knobs.k:
            run.lap("respond")
            return tier_result(tier, knobs, stage_ms=run.stage_ms, degraded=[*run.degraded, why])
        ctx = self._context(request.user_id, state, now, cons, run)
        lists, counts, errors, ctx = await self._retrieve(ctx, fallback_items, run, user_vectors)
        merged = merge_ranked(lists, self.config.quotas, self.config.candidate_limit)
        cands = merged.candidates
        run.lap("merge")
        records = await self._records(merged.ids, run, merged)
        kept = apply_filters(cands, records, state, cons, self.config.filters)
        run.lap("filter")
        got = self._gather(self.rows.vector_rows(kept, merged))
        scored = self._score(request, ctx, kept, got, now=now, run=run)
        slate, skipped = self._order(
            scored.values, kept, got, knobs, correlation_id=request.correlation_id, rng=rng, run=run
        )
        items = slate_items(slate, kept, scored.values, scored.p_click, scored.p_purchase)
        run.lap("respond")
        result = FunnelResult(
            items=items,
            propensities=slate.propensities,
            explored=slate.explored,
            features=scored.features[slate.order] if len(scored.features) else scored.features,
            feature_columns=self.plan.columns if scored.p_click is not None else (),
            knobs=knobs,
            stage_ms=run.stage_ms,
            dropped=kept.dropped,
            missing=run.missing,
            source_counts=counts,
            source_errors=errors,
            degraded=tuple(run.degraded) + (("no_candidates",) if not items else ()),
            skipped=skipped,
            n_candidates=len(cands),
            kept=kept,
            values=scored.values if scored.p_click is not None else None,
            n_ranked=len(kept.kept),
        )
        return top_up(tier, result, knobs.k, why) if why and tier is not None and tier.kept.kept else result

    def _precomputed_reason(self, run: RunLog) -> str | None:
        """Why the precomputed tier is tried first (no model, or the deadline nearly spent), or None.

        A retrieval-only version (item vectors, no ranker) ranks by its own two-tower score: that is a model.
        """
        if self.ranker is None and self.vectors is None:
            return "no_ranker"
        within = self.config.precomputed_within_ms
        return "deadline" if within > 0 and run.rushed(within) else None

    async def _precomputed(
        self, user_id: str, state: UserState | None, cons: Constraints, run: RunLog
    ) -> PrecomputedTier | None:
        try:
            plist = await self.store.read_precomputed(user_id)
        except StreamrecError:
            run.degraded.append("source:precomputed")
            return None
        if plist is None:
            return None
        records = await self._records([i for i, _ in plist.items], run)
        tier = filter_precomputed(plist, records, state, cons, self.config.filters)
        run.lap("precomputed")
        return tier

    def rescore(self, request: RecommendRequest, state: UserState | None, kept: Filtered, *, now: float) -> F64 | None:
        """This funnel's model's value of each of ``kept`` (another funnel's candidates); None when it cannot rank.

        Needs ``embed`` for the two-tower feature (no store read: it runs off the request path).
        """
        run = RunLog(self.timer, self.timer())
        vec = self.embed(state) if state is not None and self.embed is not None and self.vectors is not None else None
        ctx = RetrievalContext(request.user_id, state, now, vec)
        rows = self.vectors.rows([c.item_id for c in kept.kept]) if self.vectors is not None else None
        scored = self._score(request, ctx, kept, self._gather(rows), now=now, run=run)
        return scored.values if scored.p_click is not None else None

    def _context(
        self, user_id: str, state: UserState | None, now: float, cons: Constraints, run: RunLog
    ) -> RetrievalContext:
        cats: tuple[str, ...] = (cons.category,) if cons.category else ()
        if state is not None and self.config.user_categories:
            strong = strongest_categories(category_affinity(state, now, self.features), self.config.user_categories)
            cats += tuple(c for c in strong if c not in cats)
        run.lap("context")
        return RetrievalContext(user_id, state, now, None, cats, cons.exclude)

    async def _user_vector(
        self, ctx: RetrievalContext, run: RunLog, user_vectors: Mapping[str, F32] | None
    ) -> npt.NDArray[np.float32] | None:
        """Read beforehand (batch scoring), embedded by this funnel's own tower (a pinned version), or stored."""
        if self.vectors is None:
            return None
        if user_vectors is not None:
            return user_vectors.get(ctx.user_id)
        if ctx.state is None:
            return None
        if self.embed is not None:
            return self.embed(ctx.state)
        try:
            return await self.store.read_user_vector(ctx.user_id)
        except StreamrecError:
            run.degraded.append("user_vector")
            return None

    async def _retrieve(
        self,
        ctx: RetrievalContext,
        fallback_items: Sequence[tuple[str, float]],
        run: RunLog,
        user_vectors: Mapping[str, F32] | None = None,
    ) -> tuple[dict[str, Scored], dict[str, int], dict[str, int], RetrievalContext]:
        """Every source at once; the session vector is read alongside the sources that do not need it
        (``uses_vector`` false), so its round trip overlaps theirs. Returns the context with the vector."""
        vector = asyncio.ensure_future(self._user_vector(ctx, run, user_vectors))

        async def with_vector(source: CandidateSource) -> Scored:
            return await source.fetch(replace(ctx, user_vector=await vector))

        # Sources without the vector start first: their store reads are on the wire while the vector's
        # sources (an ANN search on the loop) compute, instead of being sent only once the search is done.
        uses = [bool(getattr(s, "uses_vector", False)) for s in self.sources]
        tasks = {
            j: asyncio.ensure_future(with_vector(self.sources[j]) if uses[j] else self.sources[j].fetch(ctx))
            for j in sorted(range(len(self.sources)), key=uses.__getitem__)  # stable: store reads first
        }
        got = await asyncio.gather(*(tasks[j] for j in range(len(self.sources))), return_exceptions=True)
        ctx = replace(ctx, user_vector=await vector)
        lists: dict[str, Scored] = {}
        errors: dict[str, int] = {}
        for source, out in zip(self.sources, got, strict=True):
            if isinstance(out, StreamrecError):
                errors[source.name] = 1
                run.degraded.append(f"source:{source.name}")
            elif isinstance(out, BaseException):
                raise out
            else:
                lists[source.name] = out
        if not any(lists.values()) and fallback_items:
            lists["fallback"] = await StaticSource(fallback_items).fetch(ctx)
        run.lap("retrieve")
        return lists, {name: len(v) for name, v in lists.items()}, errors, ctx

    def _gather(self, rows: I64 | None) -> Gathered | None:
        """The kept candidates' item vectors, gathered once for the two-tower feature and MMR."""
        return self.vectors.gather(rows) if self.vectors is not None and rows is not None else None

    async def _records(self, item_ids: Sequence[str], run: RunLog, merged: Merged | None = None) -> ItemColumns:
        ask = list(range(len(item_ids)))
        cols = ItemColumns.empty(item_ids)
        if self.config.catalog_first:
            cols = self.rows.local_columns(item_ids, merged)
            ask = np.flatnonzero(~cols.known).tolist()
        try:
            got = await self.store.read_item_columns([item_ids[j] for j in ask]) if ask else None
        except StreamrecError:
            run.degraded.append("items_store")
            fallback = [item_ids[j] for j in ask]
            got = ItemColumns.from_records(fallback, [self.catalog.get(i) for i in fallback])
        if got is not None:
            cols.fill(ask, got)
        run.lap("items")
        return cols

    def _score(
        self,
        request: RecommendRequest,
        ctx: RetrievalContext,
        kept: Filtered,
        got: Gathered | None,
        *,
        now: float,
        run: RunLog,
    ) -> _Scored:
        empty = np.zeros((0, len(self.plan.columns)), np.float32)
        if self.ranker is None or not kept.kept:
            if self.ranker is None and kept.kept:
                two_tower = two_tower_values(got, ctx.user_vector)
                if two_tower is not None:  # a retrieval-only version: its own score, as offline evaluation ranks
                    run.lap("score")
                    return _Scored(two_tower, None, None, empty)
            if self.ranker is None:
                run.degraded.append("no_ranker")
            return _Scored(_retrieval_scores(kept), None, None, empty)
        ids = kept.records.ids  # aligned with the kept candidates
        dots, found = gathered_dots(got, ctx.user_vector)
        hyd = hydrate(
            self.plan,
            ctx.user_id,
            ctx.state,
            ids,
            kept.records,
            now=now,
            cfg=self.features,
            tt_dot=dots,
            tt_found=found,
        )
        run.missing = hyd.missing
        run.lap("hydrate")
        try:
            p_click, p_purchase = self.ranker.score(hyd.matrix)
        except RankerError:
            run.degraded.append("ranker_error")
            return _Scored(_retrieval_scores(kept), None, None, empty)
        price = kept.records.price
        values = self.config.value_for(request.surface).value(p_click, p_purchase, price)
        run.lap("score")
        return _Scored(values, p_click, p_purchase, hyd.matrix)

    def tt_dots(self, rows: I64 | None, user_vec: F32 | None) -> tuple[F32 | None, npt.NDArray[np.bool_] | None]:
        """Dot products of the session vector with the candidates' item vectors (see ``session_dots``)."""
        return session_dots(self.vectors, rows, user_vec)

    def _order(
        self,
        values: F64,
        kept: Filtered,
        got: Gathered | None,
        knobs: Knobs,
        *,
        correlation_id: str,
        rng: np.random.Generator | None,
        run: RunLog,
    ) -> tuple[Slate, tuple[str, ...]]:
        cfg = self.config.ordering
        cats = category_codes(kept.records.category) if cfg.category_cap else None
        rushed = run.rushed(self.config.reserve_ms)
        if rushed:
            run.degraded.append("deadline")
        unit = None
        if not rushed and got is not None and knobs.mmr_lambda < 1.0:
            unit = got.unit()
        exploit = mmr(values, unit, knobs.k, 1.0 if rushed else knobs.mmr_lambda, cats=cats, cap=cfg.category_cap)
        if rushed or knobs.policy == "none" or (knobs.policy == "epsilon" and knobs.epsilon <= 0.0):
            slate = greedy_slate(exploit)
        else:
            gen = rng or np.random.default_rng([self.config.seed, zlib.crc32(correlation_id.encode())])
            pool = explore_pool(values, exploit, cfg.explore_pool)
            if knobs.policy == "thompson":
                ranked, names = [*exploit, *pool.tolist()], _primary_sources(kept.kept)
                slate = thompson_slate(
                    ranked, names, len(exploit), self.posteriors, gen, exploit=exploit, cats=cats, cap=cfg.category_cap
                )
            else:
                slate = epsilon_greedy(exploit, pool, knobs.epsilon, gen, cats=cats, cap=cfg.category_cap)
        run.lap("order")
        return slate, (("mmr", "explore") if rushed else ())


def _primary_sources(kept: Sequence[Candidate]) -> list[str]:
    """Each kept candidate's primary source (from the columns, without building the candidates)."""
    return kept.primary if isinstance(kept, CandidateList) else [c.source for c in kept]


def _retrieval_scores(kept: Filtered) -> F64:
    """The fused retrieval score of each kept candidate: the order served without a model's values."""
    if isinstance(kept.kept, CandidateList):
        return np.asarray(kept.kept.scores, np.float64)
    return np.fromiter(map(_fused, kept.kept), np.float64, len(kept.kept))


_fused = attrgetter("score")
