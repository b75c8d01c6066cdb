"""Every request with a correlation id gets a typed reply; without one it is dead-lettered."""

from __future__ import annotations

from datetime import UTC, datetime

import orjson
import pytest

from agents.funnel.requests import Rejected, budget_ms, triage_request
from streams.errors import DecodeError
from streams.records import ErrorCode, RecommendRequest
from streams.settings import ServingSettings, ValidationSettings

KW = {"limits": ValidationSettings(), "serving": ServingSettings(max_k=50), "now": 100.0}


def test_valid_request_passes() -> None:
    req = triage_request(orjson.dumps({"correlation_id": "c1", "user_id": "u1", "k": 5}), **KW)
    assert isinstance(req, RecommendRequest) and req.k == 5


@pytest.mark.parametrize("k", [0, -3, 51, 10_000])
def test_k_out_of_range_gets_a_typed_error_reply(k: int) -> None:
    out = triage_request(orjson.dumps({"correlation_id": "c1", "user_id": "u1", "k": k, "reply_to": "t"}), **KW)
    assert isinstance(out, Rejected)
    assert out.response.error is not None and out.response.error.code is ErrorCode.K_OUT_OF_RANGE
    assert out.response.correlation_id == "c1" and out.reply_to == "t" and out.response.items == []


def test_invalid_request_with_correlation_id_gets_invalid_request() -> None:
    out = triage_request(orjson.dumps({"correlation_id": "c2", "k": "many"}), **KW)
    assert isinstance(out, Rejected)
    assert out.response.error is not None and out.response.error.code is ErrorCode.INVALID_REQUEST
    assert "user_id" in out.response.error.message and "k" in out.response.error.message


@pytest.mark.parametrize("raw", [b"garbage", orjson.dumps({"user_id": "u1"}), orjson.dumps({"correlation_id": ""})])
def test_no_correlation_id_means_dead_letter(raw: bytes) -> None:
    with pytest.raises(DecodeError, match="no correlation_id"):
        triage_request(raw, **KW)


def _sent(at: float, deadline_ms: float) -> bytes:
    sent = datetime.fromtimestamp(at, UTC).isoformat()
    return orjson.dumps({"correlation_id": "c3", "user_id": "u1", "deadline_ms": deadline_ms, "sent_at": sent})


@pytest.mark.parametrize(("waited_s", "expired"), [(0.0, False), (0.049, False), (0.051, True), (3.0, True)])
def test_a_request_taken_past_its_deadline_gets_deadline_exceeded(waited_s: float, expired: bool) -> None:
    out = triage_request(_sent(100.0 - waited_s, 50.0), **KW)
    if not expired:
        assert isinstance(out, RecommendRequest)
        assert budget_ms(out, 100.0, KW["serving"]) == pytest.approx(50.0 - 1000 * waited_s)
        return
    assert isinstance(out, Rejected) and out.response.error is not None
    assert out.response.error.code is ErrorCode.DEADLINE_EXCEEDED and out.response.fallback
    assert f"waited {1000 * waited_s:.0f} ms" in out.response.error.message


def test_the_wait_is_not_counted_when_the_setting_is_off_or_the_sender_clock_is_ahead() -> None:
    off = {**KW, "serving": ServingSettings(max_k=50, count_kafka_wait=False)}
    assert isinstance(triage_request(_sent(90.0, 50.0), **off), RecommendRequest)
    ahead = triage_request(_sent(105.0, 50.0), **KW)  # a sender clock 5 s ahead: no wait, the full budget
    assert isinstance(ahead, RecommendRequest) and budget_ms(ahead, 100.0, KW["serving"]) == 50.0
