"""Builds the serving funnel of a worker from settings, the online store and the loaded model version."""

from __future__ import annotations

import logging
from collections.abc import Mapping

from agents.funnel.candidates import CandidateSource
from agents.funnel.embeddings import ItemVectors
from agents.funnel.filters import FilterConfig
from agents.funnel.hydrate import HydrationPlan
from agents.funnel.ordering import OrderingConfig
from agents.funnel.pipeline import DEFAULT_QUOTAS, Funnel, FunnelConfig
from agents.funnel.scoring import OnnxRanker, Ranker, ValueConfig
from agents.funnel.sources import AnnSource, CachedPool, CovisitSource, PoolSource
from agents.funnel.thompson import SourcePosteriors
from state.features import FeatureConfig
from state.items import ItemRecord
from state.pools import PoolConfig
from state.registry import LoadedVersion
from state.store import OnlineFeatureStore
from streams.errors import ConfigError
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
    store: OnlineFeatureStore, pools: PoolConfig, loaded: LoadedVersion | None, ann_k: int = 300
) -> list[CandidateSource]:
    """Retrieval channels: ANN over the version's item index (when there is one), co-visitation and the pools."""
    out: list[CandidateSource] = []
    if loaded is not None and loaded.index is not None:
        out.append(AnnSource(loaded.index, loaded.item_ids, k=ann_k))
    out.append(CovisitSource(store, pools))
    out += [
        CachedPool(PoolSource(store, kind, pools), ttl_s=1.0) for kind in ("trending", "fresh", "popular", "category")
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
        quotas={**DEFAULT_QUOTAS, "ann": max(DEFAULT_QUOTAS["ann"], serving.ann_k)},
        catalog_first=True,
    )


def serving_experiment(experiments: ExperimentSettings) -> Experiment | None:
    """The experiment whose arms change serving: the first enabled one (one at a time, by design for now).

    Arms may change the value formula and ordering knobs; an arm naming another model version is refused
    at start-up, since a worker serves one version (the champion) at a time.
    """
    active = [e for e in experiments.active if e.enabled]
    if not active:
        return None
    exp = active[0]
    pinned = [v.name for v in exp.variants if v.model_version is not None]
    if pinned:
        raise ConfigError(
            f"experiment {exp.name!r}: arms {pinned} pin a model version, which workers do not "
            "support yet (they serve the registry champion); vary value_formula, mmr_lambda or epsilon"
        )
    return exp


def build_funnel(
    *,
    store: OnlineFeatureStore,
    pools: PoolConfig,
    features: FeatureConfig,
    loaded: LoadedVersion | None,
    catalog: Mapping[str, ItemRecord],
    config: FunnelConfig | None = None,
    posteriors: SourcePosteriors | None = None,
    ann_k: int = 300,
) -> Funnel:
    """The funnel a worker serves with; ``Funnel.set_model`` swaps versions later."""
    ranker, plan, vectors = model_parts(loaded)
    if loaded is not None and ranker is None:
        log.warning("model %s has no ranker: serving in its two-tower score order", loaded.manifest.version)
    return Funnel(
        config or FunnelConfig(catalog_first=True),
        store,
        sources(store, pools, loaded, ann_k),
        ranker=ranker,
        plan=plan,
        vectors=vectors,
        features=features,
        catalog=catalog,
        posteriors=posteriors,
    )
