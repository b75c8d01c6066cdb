"""The simulated world: a catalog, users with latent tastes, and the vectorised click and purchase model."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

F64 = npt.NDArray[np.float64]
I64 = npt.NDArray[np.int64]
B = npt.NDArray[np.bool_]
DAY_S = 86_400.0


@dataclass(frozen=True, slots=True)
class SimConfig:
    """Knobs of the simulator; the same config and seed always give the same records."""

    seed: int = 7
    start: float = 1_735_689_600.0  # 2025-01-01T00:00:00Z
    n_users: int = 10_000
    n_items: int = 5_000
    n_categories: int = 20
    brands_per_category: int = 8
    dim: int = 8
    taste_concentration: float = 0.3  # Dirichlet alpha: small = users like few categories
    zipf_a: float = 1.1  # popularity skew of items within a category
    new_item_share: float = 0.1  # items created during the run (within ``horizon_s``)
    unavailable_share: float = 0.05  # items that go out of stock for a while during the run
    horizon_s: float = DAY_S  # catalog changes happen within [start, start + horizon_s)
    sessions_per_s: float = 20.0  # simulated time
    list_size: int = 10
    requests_per_session: float = 2.0  # mean lists shown per session
    organic_views_per_session: float = 1.5
    position_decay: float = 0.8  # examination probability 1 / (1 + position) ** decay
    explore_share: float = 0.5  # logging policy: share of slots drawn outside the user's taste

    def __post_init__(self) -> None:
        if min(self.n_users, self.n_items, self.n_categories, self.brands_per_category, self.dim, self.list_size) < 1:
            raise ValueError(f"sizes must be >= 1: {self}")
        if self.sessions_per_s <= 0 or self.horizon_s <= 0:
            raise ValueError(f"rates and horizons must be > 0: {self}")


@dataclass(frozen=True, slots=True)
class Catalog:
    """Items as columns; ``order``/``cdf`` let any category's Zipf draw be one ``searchsorted``."""

    category: I64
    brand: I64
    price: F64
    quality: F64
    vec: F64
    created_at: F64
    off_at: F64  # out of stock from here (inf: never)
    on_at: F64  # back in stock from here
    order: I64  # item indices sorted by (category, popularity rank)
    cdf: F64  # per category, cumulative popularity shifted by the category index
    median_price: F64  # per category

    def valid(self, items: I64, ts: F64) -> B:
        """Items that exist and are in stock at ``ts``."""
        out_of_stock = (self.off_at[items] <= ts) & (ts < self.on_at[items])
        return (self.created_at[items] <= ts) & ~out_of_stock


@dataclass(frozen=True, slots=True)
class Users:
    """Users as columns: category taste, latent vector, price sensitivity, activity weight."""

    taste: F64  # [n_users, n_categories], rows sum to 1
    taste_cdf: F64
    vec: F64
    price_sens: F64
    activity: F64  # sampling probabilities


@dataclass(frozen=True, slots=True)
class World:
    cfg: SimConfig
    catalog: Catalog
    users: Users

    def sample_items(self, cats: I64, rng: np.random.Generator) -> I64:
        """One Zipf-popular item per entry of ``cats``."""
        pos = np.searchsorted(self.catalog.cdf, cats + rng.random(cats.shape[0]), side="right")
        out: I64 = self.catalog.order[np.minimum(pos, self.catalog.order.shape[0] - 1)]
        return out

    def sample_categories(self, users: I64, explore: float, rng: np.random.Generator) -> I64:
        """A category per user: from their taste, or uniform with probability ``explore``."""
        r: F64 = rng.random(int(users.shape[0]))
        own = (self.users.taste_cdf[users] < r[:, None]).sum(axis=1)
        uniform = rng.integers(0, self.cfg.n_categories, users.shape[0])
        pick = rng.random(users.shape[0]) < explore
        return np.minimum(np.where(pick, uniform, own), self.cfg.n_categories - 1)

    def utility(self, users: I64, items: I64) -> F64:
        """Latent appeal of items to users (taste for the category, latent match, quality, price)."""
        c = self.catalog
        taste = np.log(np.maximum(self.users.taste[users, c.category[items]] * self.cfg.n_categories, 1e-3))
        match = np.einsum("ij,ij->i", self.users.vec[users], c.vec[items])
        price = np.log(c.price[items] / c.median_price[c.category[items]]) * self.users.price_sens[users]
        out: F64 = 0.6 * taste + 1.2 * match + c.quality[items] - 0.4 * price
        return out

    def outcomes(self, users: I64, items: I64, positions: I64, rng: np.random.Generator) -> tuple[B, B, B]:
        """Clicked, carted and purchased masks for items shown at ``positions`` (-1: sought out, always seen)."""
        u = self.utility(users, items)
        seen = np.where(positions < 0, 1.0, 1.0 / (1.0 + np.maximum(positions, 0)) ** self.cfg.position_decay)
        attract = _sigmoid(u - 2.0)
        clicked = (rng.random(u.shape[0]) < seen) & (rng.random(u.shape[0]) < attract)
        carted = clicked & (rng.random(u.shape[0]) < _sigmoid(0.8 * u - 2.0))
        bought = carted & (rng.random(u.shape[0]) < _sigmoid(0.5 * u - 0.4))
        return clicked, carted, bought


def _sigmoid(x: F64) -> F64:
    out: F64 = 1.0 / (1.0 + np.exp(-x))
    return out


def build_world(cfg: SimConfig) -> World:
    """Draw the catalog and the users from ``cfg.seed`` (independent of the event stream's draws)."""
    rng = np.random.default_rng([cfg.seed, 0])
    return World(cfg, _catalog(cfg, rng), _users(cfg, rng))


def _catalog(cfg: SimConfig, rng: np.random.Generator) -> Catalog:
    n, nc = cfg.n_items, cfg.n_categories
    category = rng.integers(0, nc, n)
    brand = category * cfg.brands_per_category + rng.integers(0, cfg.brands_per_category, n)
    cat_mu = rng.normal(3.0, 0.8, nc)  # log-price level per category
    price = np.round(np.exp(cat_mu[category] + rng.normal(0.0, 0.5, n)), 2).astype(np.float64)
    created = cfg.start - rng.uniform(0.0, 365 * DAY_S, n)
    fresh = rng.random(n) < cfg.new_item_share
    created[fresh] = cfg.start + rng.uniform(0.0, cfg.horizon_s, int(fresh.sum()))
    off = np.full(n, np.inf)
    on = np.full(n, np.inf)
    out = rng.random(n) < cfg.unavailable_share
    off[out] = np.maximum(cfg.start + rng.uniform(0.0, cfg.horizon_s, int(out.sum())), created[out] + 60.0)
    on[out] = off[out] + rng.exponential(2 * 3600.0, int(out.sum()))
    created, off, on = (np.round(a * 1e6) / 1e6 for a in (created, off, on))  # whole microseconds, as events
    rank = np.empty(n, dtype=np.float64)
    order = np.lexsort((rng.random(n), category))  # random popularity order within each category
    cdf = np.empty(n, dtype=np.float64)
    bounds = np.searchsorted(category[order], np.arange(nc + 1))
    for c in range(nc):
        lo, hi = bounds[c], bounds[c + 1]
        r = np.arange(1, hi - lo + 1, dtype=np.float64)
        rank[order[lo:hi]] = r
        w = r**-cfg.zipf_a
        cdf[lo:hi] = c + np.cumsum(w) / w.sum()
    quality = rng.normal(0.0, 0.5, n) - 0.15 * np.log(rank)  # popular items are a little better
    median = np.array([np.median(price[category == c]) if np.any(category == c) else 1.0 for c in range(nc)])
    vec = rng.normal(0.0, 1.0 / np.sqrt(cfg.dim), (n, cfg.dim))
    return Catalog(category, brand, price, quality, vec, created, off, on, order, cdf, median)


def _users(cfg: SimConfig, rng: np.random.Generator) -> Users:
    taste = rng.dirichlet(np.full(cfg.n_categories, cfg.taste_concentration), cfg.n_users)
    cdf = np.cumsum(taste, axis=1)
    cdf[:, -1] = 1.0
    vec = rng.normal(0.0, 1.0, (cfg.n_users, cfg.dim))
    activity = rng.lognormal(0.0, 1.0, cfg.n_users)
    return Users(taste, cdf, vec, rng.lognormal(-0.5, 0.5, cfg.n_users), activity / activity.sum())
