"""Serving agent: answer every request on rec-requests with a response on its reply topic."""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Any

import faust

from agents.dead_letters import DeadLetterSink
from agents.funnel.baseline import popular_not_seen
from agents.funnel.requests import Rejected, error_response, triage_request
from agents.runtime import Runtime
from state.features import interacted_items
from streams.codec import encode
from streams.errors import DecodeError
from streams.records import ErrorCode, RecommendRequest, RecommendResponse

log = logging.getLogger(__name__)


def answer(rt: Runtime, req: RecommendRequest, received: float) -> RecommendResponse:
    """Baseline answer from the local state and the cached popular list (pure over the runtime's caches)."""
    state = rt.user_state(req.user_id)
    seen = interacted_items(state) if state is not None else frozenset()
    items = popular_not_seen(rt.popular, seen, frozenset(req.exclude), req.k)
    now = rt.clock.now()
    return RecommendResponse(
        correlation_id=req.correlation_id,
        user_id=req.user_id,
        items=items,
        model_version="baseline-popular",
        fallback=len(items) < req.k,
        served_at=datetime.fromtimestamp(now, UTC),
        latency_ms=(now - received) * 1000.0,
    )


def register(app: faust.App, rt: Runtime) -> None:
    """Register the serving agent and the popular-list refresher on ``app``."""
    requests = app.topic(rt.topics.rec_requests)
    dead = DeadLetterSink(app, rt)
    replies: dict[str, Any] = {}

    def reply_topic(name: str | None) -> Any:
        name = name or rt.topics.rec_responses
        if name not in replies:
            replies[name] = app.topic(name)
        return replies[name]

    @app.timer(interval=rt.settings.serving.popular_refresh_s)  # type: ignore[untyped-decorator]
    async def refresh_popular() -> None:
        rt.popular = await rt.store.top_popular(rt.settings.serving.popular_pool_size, rt.clock.now())

    @app.agent(requests, name="serve")
    async def serve(stream: faust.StreamT[bytes]) -> None:
        async for event in stream.events():
            received = rt.clock.now()
            msg = event.message
            try:
                triaged = triage_request(
                    event.value, limits=rt.settings.validation, serving=rt.settings.serving, now=received
                )
            except DecodeError as exc:
                await dead.send(exc, msg)
                continue
            if isinstance(triaged, Rejected):
                response, reply_to = triaged.response, triaged.reply_to
            else:
                response, reply_to = _answer_safely(rt, triaged, received), triaged.reply_to
            await reply_topic(reply_to).send(key=response.correlation_id.encode(), value=encode(response))


def _answer_safely(rt: Runtime, req: RecommendRequest, received: float) -> RecommendResponse:
    try:
        return answer(rt, req, received)
    except Exception as exc:
        log.exception("answering %s failed", req.correlation_id)
        return error_response(
            correlation_id=req.correlation_id,
            user_id=req.user_id,
            code=ErrorCode.INTERNAL,
            message=repr(exc),
            started=received,
            now=rt.clock.now(),
        )
