"""Every request with a correlation id gets a typed reply; without one it is dead-lettered."""

from __future__ import annotations

import orjson
import pytest

from agents.funnel.requests import Rejected, triage_request
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
