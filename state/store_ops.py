"""Backend-neutral primitive operations: a write batch becomes a list of these, reads are made of these."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class SetOp:
    key: str
    value: bytes
    ttl_s: int | None = None


@dataclass(frozen=True, slots=True)
class HIncrOp:
    key: str
    field: str
    amount: int


@dataclass(frozen=True, slots=True)
class HMaxOp:
    """Set each field to ``max(current, value)`` (offsets never go backwards)."""

    key: str
    values: Mapping[str, int]


@dataclass(frozen=True, slots=True)
class ZIncrOp:
    key: str
    member: str
    amount: float


@dataclass(frozen=True, slots=True)
class ZAddOp:
    key: str
    scores: Mapping[str, float]


@dataclass(frozen=True, slots=True)
class ZRemOp:
    key: str
    members: Sequence[str]


@dataclass(frozen=True, slots=True)
class ZTrimOp:
    """Keep only the ``keep`` highest-scored members."""

    key: str
    keep: int


@dataclass(frozen=True, slots=True)
class ExpireOp:
    """Expire ``key`` ``ttl_s`` seconds after this write (relative, so replayed history never expires at once)."""

    key: str
    ttl_s: int


WriteOp = SetOp | HIncrOp | HMaxOp | ZIncrOp | ZAddOp | ZRemOp | ZTrimOp | ExpireOp


@dataclass(frozen=True, slots=True)
class GetMany:
    """Values of ``keys`` (None where absent or expired)."""

    keys: Sequence[str]


@dataclass(frozen=True, slots=True)
class HGetMany:
    """Integer values of ``fields`` in hash ``key`` (None where absent)."""

    key: str
    fields: Sequence[str]


@dataclass(frozen=True, slots=True)
class HGetAll:
    key: str


@dataclass(frozen=True, slots=True)
class ZTop:
    """Up to ``n`` members of ``key``, highest score first (ties: member descending, as Redis)."""

    key: str
    n: int


@dataclass(frozen=True, slots=True)
class ZAbove:
    """Up to ``n`` members of ``key`` scored strictly above ``above``, highest first, without their scores
    (a read of a long log then costs what it returns, and no score is parsed)."""

    key: str
    above: float
    n: int


ReadOp = GetMany | HGetMany | HGetAll | ZTop | ZAbove
ReadResult = list[bytes | None] | list[int | None] | dict[str, str] | list[tuple[str, float]] | list[str]
