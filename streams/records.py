"""Versioned, typed records exchanged over Kafka; the wire format is JSON (see docs/wire-format.md)."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Annotated, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

SCHEMA_VERSION: Literal[1] = 1

Id = Annotated[str, Field(min_length=1, max_length=128)]
EventType = Literal["view", "click", "add_to_cart", "purchase", "impression"]
EVENT_TYPES: tuple[EventType, ...] = ("view", "click", "add_to_cart", "purchase", "impression")
ContextValue = str | int | float | bool


class _Record(BaseModel):
    # Unknown fields are ignored so newer producers can add fields without breaking older workers.
    model_config = ConfigDict(frozen=True, extra="ignore")


class Event(_Record):
    """One user interaction; keyed by ``user_id`` on the events topic."""

    schema_version: Literal[1] = SCHEMA_VERSION
    event_id: Id
    type: EventType
    user_id: Id
    item_id: Id
    ts: AwareDatetime
    session_id: Id | None = None
    price: Annotated[float, Field(ge=0)] | None = None
    position: Annotated[int, Field(ge=0)] | None = None
    request_id: Id | None = Field(default=None, description="correlation id of the list that showed the item")
    context: dict[str, ContextValue] = Field(default_factory=dict)


class ItemUpdate(_Record):
    """A catalog upsert; keyed by ``item_id`` on the (compacted) items topic."""

    schema_version: Literal[1] = SCHEMA_VERSION
    item_id: Id
    category: Id
    brand: str = ""
    price: Annotated[float, Field(ge=0)]
    available: bool = True
    created_at: AwareDatetime
    title: str = ""


class RecommendRequest(_Record):
    """Ask for ``k`` items for ``user_id``; the answer carries the same ``correlation_id``."""

    schema_version: Literal[1] = SCHEMA_VERSION
    correlation_id: Id
    user_id: Id
    k: int = 10
    surface: str = "home"
    context: dict[str, ContextValue] = Field(default_factory=dict)
    exclude: list[Id] = Field(default_factory=list, max_length=1000)
    deadline_ms: Annotated[float, Field(gt=0)] | None = None
    sent_at: AwareDatetime | None = None
    reply_to: str | None = Field(default=None, description="response topic; defaults to rec-responses")


class ErrorCode(StrEnum):
    """Typed reasons a request could not be answered in full."""

    INVALID_REQUEST = "invalid_request"
    K_OUT_OF_RANGE = "k_out_of_range"
    DEADLINE_EXCEEDED = "deadline_exceeded"
    INTERNAL = "internal"


class ErrorInfo(_Record):
    code: ErrorCode
    message: str


class RecItem(_Record):
    item_id: str
    position: int
    score: float
    source: str
    reason: str
    p_click: float | None = None
    p_purchase: float | None = None
    value: float | None = None


class RecommendResponse(_Record):
    """The answer to one request; ``fallback`` is true whenever the answer is degraded."""

    schema_version: Literal[1] = SCHEMA_VERSION
    correlation_id: str
    user_id: str | None = None
    items: list[RecItem] = Field(default_factory=list)
    model_version: str = "none"
    variant: str = "control"
    fallback: bool = False
    error: ErrorInfo | None = None
    served_at: datetime
    latency_ms: float = 0.0
    stage_ms: dict[str, float] = Field(default_factory=dict, description="time per funnel stage (diagnostics)")
    candidates: int = Field(default=0, ge=0, description="candidates after merging the sources (diagnostics)")
    ranked: int = Field(default=0, ge=0, description="candidates left after the hard filters (diagnostics)")


class DeadLetter(_Record):
    """A message streamrec could not use, with the reason and where it came from."""

    schema_version: Literal[1] = SCHEMA_VERSION
    reason: str
    detail: str
    topic: str
    partition: int
    offset: int
    key: str | None = None
    payload: str
    received_at: datetime


class Impression(_Record):
    """One served list, logged to the impressions topic for training and off-policy evaluation.

    ``items``, ``propensities`` and ``features`` are aligned: ``propensities[j]`` is the probability the
    policy placed ``items[j]`` at its position given the candidates and the positions before it, and
    ``features[j]`` the ranker row used for it in ``feature_columns`` order (empty when nothing was scored).
    """

    schema_version: Literal[1] = SCHEMA_VERSION
    correlation_id: str
    user_id: str
    variant: str = "control"
    model_version: str = "none"
    items: list[RecItem] = Field(default_factory=list)
    propensities: list[float] = Field(default_factory=list)
    feature_columns: list[str] = Field(default_factory=list)
    features: list[list[float]] = Field(default_factory=list)
    fallback: bool = False
    served_at: AwareDatetime


ModelAction = Literal["promote", "retire"]


class ModelUpdate(_Record):
    """A registry change announced on the ``model-updates`` control topic; every worker reads every one.

    The registry stays the source of truth: a worker that receives ``promote`` loads the registry's
    champion now instead of at its next poll, and ``retire`` makes it re-read the champion (none: serve
    without a model).
    """

    schema_version: Literal[1] = SCHEMA_VERSION
    version: Id
    action: ModelAction
    ts: AwareDatetime


class ShadowRecord(_Record):
    """How a challenger version would have ranked one request's candidates, beside the champion that served it.

    ``champion_top`` / ``challenger_top`` are the top-k by each model's value over the same filtered
    candidates; ``score_deltas[j]`` is challenger minus champion value of ``champion_top[j]``;
    ``rank_correlation`` is Spearman's rho over every candidate.
    """

    schema_version: Literal[1] = SCHEMA_VERSION
    correlation_id: str
    user_id: str
    champion_version: str
    challenger_version: str
    k: int
    n_candidates: int
    champion_top: list[str]
    challenger_top: list[str]
    overlap_at_k: float
    rank_correlation: float | None = None
    score_deltas: list[float]
    mean_abs_delta: float
    ts: AwareDatetime
