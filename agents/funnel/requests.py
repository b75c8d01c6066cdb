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
    """A request that gets a typed error reply (it had a usable correlation id)."""

    response: RecommendResponse
    reply_to: str | None


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


def triage_request(
    raw: bytes | None, *, limits: ValidationSettings, serving: ServingSettings, now: float
) -> RecommendRequest | Rejected:
    """Decode and check a request; raise DecodeError only when no reply is possible (no correlation id)."""
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
        msg = f"k={req.k} is out of range [1, {serving.max_k}]"
        return Rejected(
            error_response(
                correlation_id=req.correlation_id,
                user_id=req.user_id,
                code=ErrorCode.K_OUT_OF_RANGE,
                message=msg,
                started=now,
                now=now,
            ),
            req.reply_to,
        )
    return req
