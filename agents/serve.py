"""Serving agent: answer every request on rec-requests with a response on its reply topic."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import faust

from agents.dead_letters import DeadLetterSink
from agents.funnel.outcome import FunnelResult
from agents.funnel.pipeline import Funnel
from agents.funnel.requests import Rejected, budget_ms, error_response, triage_request, waited_ms
from agents.replies import ImpressionProducer, ReplyProducer
from agents.request_consumer import RequestConsumer
from agents.runtime import Runtime
from agents.shadow import ShadowJob, ShadowScorer, sampled
from state.errors import StoreError
from state.user_state import UserState
from streams.codec import encode
from streams.errors import DecodeError
from streams.records import ErrorCode, Impression, RecommendRequest, RecommendResponse, ShadowRecord

log = logging.getLogger(__name__)


async def answer(rt: Runtime, req: RecommendRequest, received: float) -> tuple[RecommendResponse, Impression]:
    """Run the four-stage funnel for one request; degraded answers carry ``fallback``."""
    response, impression, _ = await answer_and_shadow(rt, req, received)
    return response, impression


@dataclass(frozen=True, slots=True)
class Answered:
    """A built response and what its bookkeeping (:func:`record`) needs once the reply is on its way."""

    request: RecommendRequest
    response: RecommendResponse
    result: FunnelResult
    state: UserState | None
    degraded: list[str]
    received: float
    now: float


async def answer_and_shadow(
    rt: Runtime, req: RecommendRequest, received: float
) -> tuple[RecommendResponse, Impression, ShadowJob | None]:
    """:func:`answer`, plus the shadow job of the request when a challenger is loaded and the request sampled."""
    answered = await respond(rt, req, received)
    impression, job = record(rt, answered)
    return answered.response, impression, job


async def respond(rt: Runtime, req: RecommendRequest, received: float) -> Answered:
    """Run the funnel and build the response only: the serving agent sends it before :func:`record`."""
    budget = budget_ms(req, received, rt.settings.serving)  # the wait in Kafka already spent some
    arm = rt.arm_for(req.user_id)
    state = rt.user_state(req.user_id)
    result = await arm.funnel.run(req, state, now=rt.clock.now(), budget_ms=budget, fallback_items=rt.popular)
    now = rt.clock.now()
    served_at = datetime.fromtimestamp(now, UTC)
    served = arm.pinned or rt.model_version
    version = "none" if {"no_ranker", "ranker_error"} & set(result.degraded) else served
    # A user with no session vector yet (new user) is served from the pools by design, not degraded.
    degraded = [d for d in result.degraded if d != "user_vector"]
    response = RecommendResponse(
        correlation_id=req.correlation_id,
        user_id=req.user_id,
        items=result.items,
        model_version=version,
        variant=arm.variant,
        fallback=bool(degraded) or len(result.items) < req.k,
        served_at=served_at,
        latency_ms=(now - received) * 1000.0,
        stage_ms={k: round(v, 3) for k, v in result.stage_ms.items()},
        candidates=result.n_candidates,
        ranked=result.n_ranked,
    )
    return Answered(req, response, result, state, degraded, received, now)


def record(rt: Runtime, answered: Answered) -> tuple[Impression, ShadowJob | None]:
    """Metrics, drift, source posteriors, the impression to log and the shadow job of an answered request."""
    req, response, result, now = answered.request, answered.response, answered.result, answered.now
    m = rt.metrics
    m.observe_stages(result.stage_ms)
    m.candidates(result.source_counts, result.source_errors)
    m.filter_drops(result.dropped)
    m.response((now - answered.received), fallback_reasons=answered.degraded if response.fallback else ())
    rt.drift.record(result)
    rt.posteriors.served(req.correlation_id, [(it.item_id, it.source) for it in result.items])
    version = response.model_version
    impression = result.impression(
        req.correlation_id, req.user_id, variant=response.variant, model_version=version, served_at=response.served_at
    )
    job = None
    shadowed = rt.shadow is not None and sampled(req.correlation_id, rt.settings.models.shadow_sample)
    if shadowed and result.kept is not None and result.values is not None:
        job = ShadowJob(req, answered.state, result.kept, result.values, version, now)
    return impression, job


def shadow_scorer(app: faust.App, rt: Runtime) -> ShadowScorer | None:
    """The worker's shadow scorer (a service of ``app``) when a challenger is loaded, else None."""
    if rt.shadow is None:
        return None
    topic = app.topic(rt.topics.shadow)

    async def send(record: ShadowRecord) -> None:
        await topic.send(key=record.user_id.encode(), value=encode(record))

    def challenger() -> tuple[str, Funnel] | None:
        version, funnel = rt.shadow_version, rt.shadow
        return (version, funnel) if version is not None and funnel is not None else None

    models = rt.settings.models
    scorer = ShadowScorer(challenger, send, rt.metrics, k=models.shadow_k, capacity=models.shadow_queue)
    app.add_dependency(scorer)
    return scorer


class RequestHandler:
    """One request from its raw message to its reply and bookkeeping; every decodable request gets a reply.

    Called with the message (anything with ``topic``, ``partition``, ``offset``, ``key`` and ``value``: a
    Faust message or an aiokafka record), so the serving agent and :class:`RequestConsumer` share it.
    """

    def __init__(self, app: faust.App, rt: Runtime) -> None:
        self.rt = rt
        self.impressions = ImpressionProducer(app, rt.settings)
        self.dead = DeadLetterSink(app, rt)
        self.scorer = shadow_scorer(app, rt)
        self.replies = ReplyProducer(app, rt.settings)

    async def __call__(self, msg: Any) -> None:
        rt = self.rt
        received = rt.clock.now()
        rt.metrics.request()
        try:
            triaged = triage_request(
                msg.value, limits=rt.settings.validation, serving=rt.settings.serving, now=received
            )
        except DecodeError as exc:
            await self.dead.send(exc, msg)
            return
        _observe_wait(rt, triaged, received)
        answered = None
        if isinstance(triaged, Rejected):
            response, reply_to = triaged.response, triaged.reply_to
            code = triaged.response.error.code.value if triaged.response.error else None
            rt.metrics.response(rt.clock.now() - received, error_code=code)
        else:
            answered = await _answer_safely(rt, triaged, received)
            response = answered if isinstance(answered, RecommendResponse) else answered.response
            reply_to = triaged.reply_to
        await self.replies.send(reply_to or rt.topics.rec_responses, response.correlation_id.encode(), encode(response))
        if isinstance(answered, Answered):  # bookkeeping after the reply is handed to the producer
            await _record_safely(rt, answered, self.impressions, self.scorer)


def register(app: faust.App, rt: Runtime) -> RequestHandler:
    """Register request serving (on :class:`RequestConsumer` or a Faust agent) and the popular-list refresher."""
    handler = RequestHandler(app, rt)
    serving = rt.settings.serving
    if serving.reply_producer == "dedicated":
        # started with the app; unstarted, they send through the app's topics
        app.add_dependency(handler.replies)
        app.add_dependency(handler.impressions)

    @app.timer(interval=serving.popular_refresh_s)  # type: ignore[untyped-decorator]
    async def refresh_popular() -> None:
        try:
            rt.popular = await rt.store.top_popular(serving.popular_pool_size, rt.clock.now())
        except StoreError as exc:  # keep serving the last list; the store's outage is logged, not fatal
            log.warning("popular list not refreshed: %s", exc)

    if serving.request_consumer == "direct":
        _consume_directly(app, rt, handler)
        return handler

    @app.agent(app.topic(rt.topics.rec_requests), name="serve", concurrency=serving.concurrency)
    async def serve(stream: faust.StreamT[bytes]) -> None:
        async for event in stream.events():
            await handler(event.message)

    return handler


def _consume_directly(app: faust.App, rt: Runtime, handler: RequestHandler) -> RequestConsumer:
    """A :class:`RequestConsumer` started with the app, following its rebalances (revoke, then assign)."""
    consumer = RequestConsumer(rt.settings, handler)
    app.add_dependency(consumer)

    async def follow(sender: Any, /, *args: Any, signal: Any, **kwargs: Any) -> None:
        await consumer.follow(args[0])  # the signal's one argument: the new assignment

    async def give_up(sender: Any, /, *args: Any, signal: Any, **kwargs: Any) -> None:
        await consumer.give_up(args[0])  # the revoked partitions

    app.on_partitions_assigned.connect(follow)
    app.on_partitions_revoked.connect(give_up)
    return consumer


def _observe_wait(rt: Runtime, triaged: RecommendRequest | Rejected, received: float) -> None:
    """The request's wait in Kafka, into the metrics (requests shed for their deadline included)."""
    serving = rt.settings.serving
    waited = triaged.waited_ms if isinstance(triaged, Rejected) else waited_ms(triaged, received, serving)
    if waited is not None:
        rt.metrics.request_wait(waited / 1000.0)


async def _record_safely(
    rt: Runtime, answered: Answered, impressions: ImpressionProducer, scorer: ShadowScorer | None
) -> None:
    try:
        impression, job = record(rt, answered)
    except Exception:  # the edge: the reply is already out; a bookkeeping failure is logged, never fatal
        log.exception("recording %s failed", answered.request.correlation_id)
        return
    user = answered.response.user_id
    await impressions.send(rt.topics.impressions, user.encode() if user else None, encode(impression))
    if job is not None and scorer is not None:
        scorer.submit(job)  # the challenger never delays an answer


async def _answer_safely(rt: Runtime, req: RecommendRequest, received: float) -> Answered | RecommendResponse:
    try:
        return await respond(rt, req, received)
    except Exception as exc:  # the edge: every request gets a reply, the failure is logged
        log.exception("answering %s failed", req.correlation_id)
        rt.metrics.response(rt.clock.now() - received, error_code=ErrorCode.INTERNAL.value)
        resp = error_response(
            correlation_id=req.correlation_id,
            user_id=req.user_id,
            code=ErrorCode.INTERNAL,
            message=repr(exc),
            started=received,
            now=rt.clock.now(),
        )
        return resp
