"""Builds the serving funnel of a worker from settings, the online store and the loaded model version."""

from __future__ import annotations

import logging
from collections.abc import Mapping

from agents.ann_recall import RecallSampler, SampledAnnSource
from agents.funnel.candidates import CandidateSource
from agents.funnel.config import FunnelConfig
from agents.funnel.embeddings import ItemVectors
from agents.funnel.filters import FilterConfig
from agents.funnel.hydrate import HydrationPlan
from agents.funnel.ordering import OrderingConfig
from agents.funnel.pipeline import F32, Embed, Funnel
from agents.funnel.scoring import OnnxRanker, Ranker, ValueConfig
from agents.funnel.sources import AnnSource, CachedPool, CovisitSource, PoolSource
from agents.funnel.thompson import SourcePosteriors
from state.features import FeatureConfig
from state.items import ItemRecord
from state.live_index import LiveIndex
from state.pools import PoolConfig
from state.registry import LoadedVersion
from state.session_tower import SessionTower
from state.session_vectors import SessionVectors
from state.store import OnlineFeatureStore
from state.user_state import UserState
from state.vectors import decode_vector, encode_vector
from streams.settings import Experiment, ExperimentSettings, ServingSettings, Variant

log = logging.getLogger(__name__)


def item_vectors(loaded: LoadedVersion) -> ItemVectors | None:
    """Item embeddings of the version (MMR and the two-tower feature), when its index can return them."""
    stored = loaded.index.stored() if loaded.index is not None and hasattr(loaded.index, "stored") else None
    if stored is None:
        return None
    ids, vecs = stored
    return ItemVectors([loaded.item_ids[i] for i in ids.tolist()], vecs)


def model_parts(loaded: LoadedVersion | None) -> tuple[Ranker | None, HydrationPlan | None, ItemVectors | None]:
    """Ranker, feature layout and item vectors of a version; all None without a model."""
    if loaded is None or "ranker" not in loaded.sessions:
        return None, None, item_vectors(loaded) if loaded is not None else None
    plan = HydrationPlan.from_spec(loaded.spec.graphs["ranker"].inputs[0])
    return OnnxRanker(loaded.sessions["ranker"]), plan, item_vectors(loaded)


def sources(
    store: OnlineFeatureStore,
    pools: PoolConfig,
    loaded: LoadedVersion | None,
    recall: RecallSampler | None = None,
    *,
    ann_k: int = 300,
    live: LiveIndex | None = None,
) -> list[CandidateSource]:
    """Retrieval channels: ANN over the version's item index (when there is one), co-visitation and the pools.

    With ``recall``, the ANN source's searches are offered to it (recall sampled against exact search). With
    ``live`` (the version's index that new catalog items join) ANN searches it and its growing id list.
    """
    out: list[CandidateSource] = []
    ann: AnnSource | None = None
    if live is not None:
        ann = AnnSource(live.index, live.item_ids, k=ann_k)
    elif loaded is not None and loaded.index is not None:
        ann = AnnSource(loaded.index, loaded.item_ids, k=ann_k)
    if ann is not None:
        out.append(SampledAnnSource(ann, recall) if recall is not None else ann)
    out.append(CovisitSource(store, pools, space=live))
    out += [
        CachedPool(PoolSource(store, kind, pools), ttl_s=1.0, space=live)
        for kind in ("trending", "fresh", "popular", "category")
    ]
    return out


def funnel_config(serving: ServingSettings, max_k: int, variant: Variant | None = None) -> FunnelConfig:
    """The funnel's start-up configuration from the settings tree, with an experiment arm's overrides."""
    v = variant or Variant(name="default", share=1.0)
    return FunnelConfig(
        candidate_limit=serving.candidate_limit,
        filters=FilterConfig(seen_last_n=serving.seen_last_n),
        value=ValueConfig(v.value_formula or serving.value_formula),
        ordering=OrderingConfig(
            mmr_lambda=serving.mmr_lambda if v.mmr_lambda is None else v.mmr_lambda,
            epsilon=serving.epsilon if v.epsilon is None else v.epsilon,
            category_cap=serving.category_cap,
            max_k=max_k,
            policy=serving.exploration_policy,
            allowed_policies=serving.allowed_policies,
        ),
        precomputed_within_ms=serving.precomputed_within_ms,
        # the ANN source's whole answer takes part in the merge (a smaller quota would cut what ann_k asked for)
        quotas={**serving.source_quotas, "ann": max(serving.source_quotas.get("ann", 0), serving.ann_k)},
        catalog_first=True,
    )


def serving_experiment(experiments: ExperimentSettings) -> Experiment | None:
    """The experiment whose arms change serving: the first enabled one (one at a time, by design for now).

    Arms may change the value formula and ordering knobs, and pin a model version (the worker loads it
    beside the champion at start-up).
    """
    active = [e for e in experiments.active if e.enabled]
    return active[0] if active else None


def pinned_versions(experiment: Experiment | None) -> tuple[str, ...]:
    """Model versions the arms of ``experiment`` pin, in arm order, each once.

    >>> from streams.settings import Variant
    >>> exp = Experiment(name="m", variants=(Variant(name="a", share=0.5, model_version="v2"),
    ...                                      Variant(name="b", share=0.5)))
    >>> pinned_versions(exp), pinned_versions(None)
    (('v2',), ())
    """
    if experiment is None:
        return ()
    return tuple(dict.fromkeys(v.model_version for v in experiment.variants if v.model_version is not None))


def session_embedder(loaded: LoadedVersion, cache: SessionVectors | None = None) -> Embed | None:
    """The version's own session vector of a user, from the state (None: no user tower, or no known item).

    Rounded as the online store keeps vectors, so the version sees what it would read there as champion.
    With ``cache``, a vector kept for the state as it is now (by the events agent, or by an earlier
    request) is reused instead of running the tower again.
    """
    if "user_tower" not in loaded.sessions:
        return None
    tower = SessionTower(loaded)
    version = loaded.manifest.version

    def embed(state: UserState) -> F32 | None:
        vec = cache.get(version, state) if cache is not None else None
        if vec is None:
            vec = tower.embed([state]).get(state.user_id)
            if vec is None:
                return None
            if cache is not None:
                cache.put(version, state, vec)
        return decode_vector(encode_vector(vec))

    return embed


def build_funnel(
    *,
    store: OnlineFeatureStore,
    pools: PoolConfig,
    features: FeatureConfig,
    loaded: LoadedVersion | None,
    catalog: Mapping[str, ItemRecord],
    config: FunnelConfig | None = None,
    own_vectors: bool = False,
    recall: RecallSampler | None = None,
    posteriors: SourcePosteriors | None = None,
    ann_k: int = 300,
    live: LiveIndex | None = None,
    session_vectors: SessionVectors | None = None,
) -> Funnel:
    """The funnel a worker serves with; ``Funnel.set_model`` swaps versions later.

    ``own_vectors``: embed sessions with this version's user tower per request, from the worker's local
    state, rounded as the store keeps them (so the champion gets the very vectors the events agent
    stores); otherwise they are read from the store.
    """
    ranker, plan, vectors = model_parts(loaded)
    if loaded is not None and ranker is None:
        log.warning("model %s has no ranker: serving in its two-tower score order", loaded.manifest.version)
    return Funnel(
        config or FunnelConfig(catalog_first=True),
        store,
        sources(store, pools, loaded, recall, ann_k=ann_k, live=live),
        ranker=ranker,
        plan=plan,
        vectors=vectors,
        features=features,
        catalog=catalog,
        embed=session_embedder(loaded, session_vectors) if own_vectors and loaded is not None else None,
        posteriors=posteriors,
        index_ids=live.item_ids if live is not None else (loaded.item_ids if loaded is not None else None),
    )
