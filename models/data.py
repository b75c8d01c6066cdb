"""Interaction datasets for training and evaluation: vocabularies, item content and the MovieLens 100K loader."""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import numpy.typing as npt

from models.errors import DataError

IntArray = npt.NDArray[np.int64]
FloatArray = npt.NDArray[np.float32]

N_PRICE_BUCKETS = 16
N_AGE_BUCKETS = 20
ML100K_GENRES: tuple[str, ...] = (
    "unknown", "action", "adventure", "animation", "children", "comedy", "crime", "documentary", "drama",
    "fantasy", "film_noir", "horror", "musical", "mystery", "romance", "sci_fi", "thriller", "war", "western",
)


def price_bucket(price: float | None) -> int:
    """Log2 price bucket; 0 means unknown.

    >>> [price_bucket(p) for p in (None, 0.0, 0.5, 1.0, 3.0, 1e12)]
    [0, 1, 1, 2, 3, 15]
    """
    if price is None or not math.isfinite(price) or price < 0:
        return 0
    return 1 + min(N_PRICE_BUCKETS - 2, math.floor(math.log2(1.0 + price)))


def age_bucket(age_days: float | None) -> int:
    """Log2 bucket of an item's age in days; 0 means unknown, items from the future count as new.

    >>> [age_bucket(d) for d in (None, -5.0, 0.0, 1.0, 30.0, 1e9)]
    [0, 1, 1, 2, 5, 19]
    """
    if age_days is None or not math.isfinite(age_days):
        return 0
    return 1 + min(N_AGE_BUCKETS - 2, math.floor(math.log2(1.0 + max(age_days, 0.0))))


@dataclass(frozen=True)
class Vocab:
    """A bijection between external string ids and dense indices ``0..n-1``."""

    ids: tuple[str, ...]
    _index: dict[str, int] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        index = {key: i for i, key in enumerate(self.ids)}
        if len(index) != len(self.ids):
            raise DataError(f"vocabulary has duplicate ids ({len(self.ids) - len(index)} duplicates)")
        object.__setattr__(self, "_index", index)

    def __len__(self) -> int:
        return len(self.ids)

    def __contains__(self, key: object) -> bool:
        return key in self._index

    def index(self, key: str) -> int:
        """Return the dense index of ``key``; raises ``KeyError`` for an unknown id."""
        return self._index[key]

    def get(self, key: str, default: int = -1) -> int:
        return self._index.get(key, default)


@dataclass(frozen=True)
class Interactions:
    """Parallel arrays of (user index, item index, timestamp in epoch seconds), sorted by user then time."""

    user: IntArray
    item: IntArray
    ts: IntArray

    def __len__(self) -> int:
        return int(self.user.shape[0])

    def take(self, rows: npt.NDArray[np.bool_] | IntArray) -> Interactions:
        return Interactions(self.user[rows], self.item[rows], self.ts[rows])

    @staticmethod
    def build(user: IntArray, item: IntArray, ts: IntArray, tie: IntArray | None = None) -> Interactions:
        """Sort stably by user then timestamp; equal timestamps go by ``tie`` (when given), then input order."""
        keys = (np.arange(user.shape[0]),) + ((tie,) if tie is not None else ()) + (ts, user)
        order = np.lexsort(keys)
        return Interactions(user[order].astype(np.int64), item[order].astype(np.int64), ts[order].astype(np.int64))

    @staticmethod
    def concat(parts: Sequence[Interactions]) -> Interactions:
        return Interactions.build(
            np.concatenate([p.user for p in parts]),
            np.concatenate([p.item for p in parts]),
            np.concatenate([p.ts for p in parts]),
        )


@dataclass(frozen=True)
class ItemContent:
    """Item features the item tower reads, so an item never seen in training still gets an embedding."""

    category: FloatArray  # [n_items, n_categories] multi-hot (genres) or one-hot (category)
    category_names: tuple[str, ...]
    brand: IntArray  # 0 = unknown brand
    n_brands: int
    price_bucket: IntArray  # 0 = unknown
    age_bucket: IntArray  # 0 = unknown
    brand_names: tuple[str, ...] = ()  # brand index i + 1 is brand_names[i] (empty: no brand vocabulary)


@dataclass(frozen=True)
class Dataset:
    """Everything a model needs from one source: vocabularies, interactions, item content, user features."""

    name: str
    users: Vocab
    items: Vocab
    interactions: Interactions
    content: ItemContent
    user_features: FloatArray  # [n_users, n_user_features]
    user_feature_names: tuple[str, ...]

    @property
    def n_users(self) -> int:
        return len(self.users)

    @property
    def n_items(self) -> int:
        return len(self.items)


def _read_lines(path: Path, encoding: str = "utf-8") -> Iterator[tuple[int, str]]:
    if not path.is_file():
        raise DataError(f"{path}: file not found")
    try:
        with path.open(encoding=encoding) as fh:
            for lineno, raw in enumerate(fh, start=1):
                line = raw.rstrip("\r\n")
                if line.strip():
                    yield lineno, line
    except UnicodeDecodeError as exc:
        raise DataError(f"{path}: not valid {encoding} text ({exc.reason} at byte {exc.start})") from exc


def _int_field(path: Path, lineno: int, name: str, value: str) -> int:
    try:
        return int(value)
    except ValueError:
        raise DataError(f"{path}:{lineno}: field {name!r} is not an integer: {value!r}") from None


def _parse_ratings(path: Path) -> tuple[list[str], list[str], list[int]]:
    users: list[str] = []
    items: list[str] = []
    stamps: list[int] = []
    for lineno, line in _read_lines(path):
        parts = line.split("\t")
        if len(parts) != 4:
            raise DataError(f"{path}:{lineno}: expected 4 tab-separated fields, got {len(parts)}: {line[:80]!r}")
        user, item, rating, ts = parts
        if not 1 <= _int_field(path, lineno, "rating", rating) <= 5:
            raise DataError(f"{path}:{lineno}: rating out of range 1..5: {rating!r}")
        users.append(str(_int_field(path, lineno, "user_id", user)))
        items.append(str(_int_field(path, lineno, "item_id", item)))
        stamps.append(_int_field(path, lineno, "timestamp", ts))
    if not users:
        raise DataError(f"{path}: no ratings")
    return users, items, stamps


def _parse_items(path: Path, ref_ts: int) -> tuple[list[str], FloatArray, IntArray]:
    ids: list[str] = []
    genres: list[list[float]] = []
    ages: list[int] = []
    n_fields = 5 + len(ML100K_GENRES)
    for lineno, line in _read_lines(path, encoding="latin-1"):
        parts = line.split("|")
        if len(parts) != n_fields:
            raise DataError(f"{path}:{lineno}: expected {n_fields} '|'-separated fields, got {len(parts)}")
        ids.append(str(_int_field(path, lineno, "movie_id", parts[0])))
        flags = parts[5:]
        if any(f not in ("0", "1") for f in flags):
            raise DataError(f"{path}:{lineno}: genre flags must be 0 or 1: {flags}")
        genres.append([float(f) for f in flags])
        ages.append(age_bucket(_release_age_days(path, lineno, parts[2], ref_ts)))
    return ids, np.asarray(genres, dtype=np.float32), np.asarray(ages, dtype=np.int64)


def _release_age_days(path: Path, lineno: int, text: str, ref_ts: int) -> float | None:
    if not text:
        return None
    try:
        released = datetime.strptime(text, "%d-%b-%Y").replace(tzinfo=UTC)
    except ValueError:
        raise DataError(f"{path}:{lineno}: release date is not DD-Mon-YYYY: {text!r}") from None
    return (ref_ts - released.timestamp()) / 86400.0


def _parse_users(path: Path) -> tuple[list[str], FloatArray, tuple[str, ...]]:
    rows: list[tuple[str, int, str, str]] = []
    for lineno, line in _read_lines(path):
        parts = line.split("|")
        if len(parts) != 5:
            raise DataError(f"{path}:{lineno}: expected 5 '|'-separated fields, got {len(parts)}")
        age = _int_field(path, lineno, "age", parts[1])
        if parts[2] not in ("M", "F"):
            raise DataError(f"{path}:{lineno}: gender must be M or F: {parts[2]!r}")
        rows.append((str(_int_field(path, lineno, "user_id", parts[0])), age, parts[2], parts[3]))
    occupations = sorted({r[3] for r in rows})
    names = ("age", "gender_m", *(f"occ_{o}" for o in occupations))
    feats = np.zeros((len(rows), len(names)), dtype=np.float32)
    for i, (_, age, gender, occ) in enumerate(rows):
        feats[i, 0] = age / 100.0
        feats[i, 1] = 1.0 if gender == "M" else 0.0
        feats[i, 2 + occupations.index(occ)] = 1.0
    return [r[0] for r in rows], feats, names


def streaming_tie_order(item_ids: Sequence[str]) -> IntArray:
    """Rank of each item id in string order: how the online state orders one user's equal-time interactions.

    ``state.user_state`` keeps recent items sorted by ``(time, type, item id)``, whatever order they arrived
    in; sorting training sequences the same way keeps a tie's order identical offline and online.

    >>> streaming_tie_order(["10", "9", "100"]).tolist()
    [0, 2, 1]
    """
    ranks = {item: r for r, item in enumerate(sorted(set(item_ids)))}
    return np.fromiter((ranks[i] for i in item_ids), dtype=np.int64, count=len(item_ids))


def without_user_features(dataset: Dataset) -> Dataset:
    """The dataset with every user feature at its serving default (0): what a worker can feed the user tower.

    Workers learn users from the event stream only, so a user tower trained on profile columns would meet
    zeros online; training on the defaults removes that skew (``streamrec replay`` measures it).
    """
    from dataclasses import replace

    return replace(dataset, user_features=np.zeros_like(dataset.user_features))


def restrict_users(dataset: Dataset, users: IntArray) -> Dataset:
    """Only the interactions of ``users``; vocabularies, content and features stay whole (indices are stable)."""
    from dataclasses import replace

    return replace(dataset, interactions=dataset.interactions.take(np.isin(dataset.interactions.user, users)))


def load_movielens_100k(root: Path) -> Dataset:
    """Load ``u.data``, ``u.item`` and ``u.user`` from ``root``; every rating becomes one implicit interaction.

    Raises :class:`DataError` naming the file and line for a missing file or a malformed line, and for ratings
    whose user or item is absent from ``u.user`` / ``u.item``.
    """
    root = Path(root)
    r_users, r_items, r_ts = _parse_ratings(root / "u.data")
    ref_ts = max(r_ts)
    item_ids, genres, ages = _parse_items(root / "u.item", ref_ts)
    user_ids, user_feats, user_names = _parse_users(root / "u.user")
    users, items = Vocab(tuple(user_ids)), Vocab(tuple(item_ids))
    missing_u = sorted(set(r_users) - set(user_ids))
    missing_i = sorted(set(r_items) - set(item_ids))
    if missing_u or missing_i:
        raise DataError(
            f"{root / 'u.data'}: ratings reference unknown users {missing_u[:5]} or items {missing_i[:5]}"
        )
    inter = Interactions.build(
        np.fromiter((users.index(u) for u in r_users), dtype=np.int64, count=len(r_users)),
        np.fromiter((items.index(i) for i in r_items), dtype=np.int64, count=len(r_items)),
        np.asarray(r_ts, dtype=np.int64),
        tie=streaming_tie_order(r_items),
    )
    n_items = len(items)
    content = ItemContent(
        category=genres,
        category_names=ML100K_GENRES,
        brand=np.zeros(n_items, dtype=np.int64),
        n_brands=1,
        price_bucket=np.zeros(n_items, dtype=np.int64),
        age_bucket=ages,
    )
    return Dataset("ml-100k", users, items, inter, content, user_feats, user_names)
