"""Triage of raw recommendation requests: a valid request, an error reply, or a dead letter."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

import orjson

from streams.codec import decode_request
from streams.errors import DecodeError
from streams.records import ErrorCode, ErrorInfo, RecommendRequest, RecommendResponse
from streams.settings import ServingSettings, ValidationSettings


@dataclass(frozen=True, slots=True)
class Rejected:
    """A request that gets a typed error reply (it had a usable correlation id); ``waited_ms`` is its wait in
    Kafka when it was decoded and that wait is counted (see :func:`waited_ms`), else None."""

    response: RecommendResponse
    reply_to: str | None
    waited_ms: float | None = None


def error_response(
    *, correlation_id: str, user_id: str | None, code: ErrorCode, message: str, started: float, now: float
) -> RecommendResponse:
    return RecommendResponse(
        correlation_id=correlation_id,
        user_id=user_id,
        fallback=True,
        error=ErrorInfo(code=code, message=message),
        served_at=datetime.fromtimestamp(now, UTC),
        latency_ms=(now - started) * 1000.0,
    )


def _salvage_ids(raw: bytes | None) -> tuple[str | None, str | None, str | None]:
    """Best-effort correlation id, user id and reply topic from an invalid request."""
    try:
        obj = orjson.loads(raw or b"")
    except orjson.JSONDecodeError:
        return None, None, None
    if not isinstance(obj, dict):
        return None, None, None
    cid, uid, reply = obj.get("correlation_id"), obj.get("user_id"), obj.get("reply_to")
    ok = isinstance(cid, str) and 0 < len(cid) <= 128
    return (cid if ok else None), (uid if isinstance(uid, str) else None), (reply if isinstance(reply, str) else None)


def waited_ms(req: RecommendRequest, now: float, serving: ServingSettings) -> float | None:
    """How long ``req`` waited between its sender's ``sent_at`` and ``now`` (0 when the sender's clock is
    ahead); None when it is not counted: no ``sent_at``, or the setting ``count_kafka_wait`` off."""
    if req.sent_at is None or not serving.count_kafka_wait:
        return None
    return max(0.0, (now - req.sent_at.timestamp()) * 1000.0)


def budget_ms(req: RecommendRequest, now: float, serving: ServingSettings) -> float:
    """What is left at ``now`` of the request's deadline (its own, or the default, at most the maximum).

    >>> sent = datetime(2026, 1, 1, tzinfo=UTC)
    >>> req = RecommendRequest(correlation_id="c", user_id="u", deadline_ms=100.0, sent_at=sent)
    >>> round(budget_ms(req, sent.timestamp() + 0.03, ServingSettings()), 3)
    70.0
    >>> budget_ms(req, sent.timestamp() + 0.03, ServingSettings(count_kafka_wait=False))
    100.0
    """
    deadline = min(req.deadline_ms or serving.default_deadline_ms, serving.max_deadline_ms)
    return deadline - (waited_ms(req, now, serving) or 0.0)


def triage_request(
    raw: bytes | None, *, limits: ValidationSettings, serving: ServingSettings, now: float
) -> RecommendRequest | Rejected:
    """Decode and check a request; raise DecodeError only when no reply is possible (no correlation id).

    A request whose deadline passed while it waited in Kafka (see :func:`budget_ms`) is rejected with
    ``deadline_exceeded`` without running the funnel: an overloaded worker sheds its backlog at once.
    """
    try:
        req = decode_request(raw, limits)
    except DecodeError as exc:
        cid, uid, reply_to = _salvage_ids(raw)
        if cid is None:
            raise DecodeError(exc.reason, f"{exc.detail} (and no correlation_id, so no reply is possible)") from exc
        resp = error_response(
            correlation_id=cid, user_id=uid, code=ErrorCode.INVALID_REQUEST, message=str(exc), started=now, now=now
        )
        return Rejected(resp, reply_to)
    if not 1 <= req.k <= serving.max_k:
        return _reject(req, ErrorCode.K_OUT_OF_RANGE, f"k={req.k} is out of range [1, {serving.max_k}]", now)
    if budget_ms(req, now, serving) <= 0:
        waited = waited_ms(req, now, serving) or 0.0  # a budget runs out only by waiting
        msg = f"the request waited {waited:.0f} ms, past its deadline"
        return _reject(req, ErrorCode.DEADLINE_EXCEEDED, msg, now, waited)
    return req


def _reject(req: RecommendRequest, code: ErrorCode, message: str, now: float, waited: float | None = None) -> Rejected:
    resp = error_response(
        correlation_id=req.correlation_id, user_id=req.user_id, code=code, message=message, started=now, now=now
    )
    return Rejected(resp, req.reply_to, waited)
