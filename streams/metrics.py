"""Prometheus metric objects on an injected registry: one ``Metrics`` per worker, ``NullMetrics`` to switch off."""

from __future__ import annotations

import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Generic, Protocol, TypeVar
from wsgiref.simple_server import WSGIServer

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server

from streams.settings import MetricsSettings

NAMESPACE = "streamrec"

# Seconds; the serving budget is 250 ms by default, so resolution is finest below it.
LATENCY_BUCKETS: tuple[float, ...] = (
    0.0002,
    0.0005,
    0.001,
    0.002,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    10.0,
)
FRESHNESS_BUCKETS: tuple[float, ...] = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 3600.0)
BATCH_BUCKETS: tuple[float, ...] = (1, 10, 50, 100, 250, 500, 1000, 2000, 5000, 10_000)
OVERLAP_BUCKETS: tuple[float, ...] = (0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.99, 1.0)
CORRELATION_BUCKETS: tuple[float, ...] = (-0.5, 0.0, 0.25, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 0.99, 1.0)
RECALL_BUCKETS: tuple[float, ...] = (0.5, 0.7, 0.8, 0.9, 0.95, 0.98, 0.99, 0.999, 1.0)


class WorkerMetrics(Protocol):
    """What agents record; implementations must never raise and never block on I/O."""

    def observe_stages(self, stage_ms: Mapping[str, float]) -> None: ...
    def request(self) -> None: ...
    def request_wait(self, seconds: float) -> None: ...
    def response(
        self, latency_s: float, *, error_code: str | None = None, fallback_reasons: Iterable[str] = ()
    ) -> None: ...
    def events(self, counts: Mapping[str, int]) -> None: ...
    def dead_letter(self, reason: str) -> None: ...
    def candidates(self, per_source: Mapping[str, int], errors: Mapping[str, int] | None = None) -> None: ...
    def filter_drops(self, per_filter: Mapping[str, int]) -> None: ...
    def freshness(self, seconds: Iterable[float]) -> None: ...
    def model_loaded(self, version: str | None, kind: str = "ranker") -> None: ...
    def model_load(self, ok: bool) -> None: ...
    def ann_recall(self, recall: float) -> None: ...
    def ann_recall_sampled(self, recalls: Iterable[float]) -> None: ...
    def drift(self, psi: Mapping[str, float], samples: int) -> None: ...
    def ingest_batch(self, size: int, latency_s: float) -> None: ...
    def shadow(self, overlap: float, correlation: float | None) -> None: ...
    def shadow_outcome(self, outcome: str) -> None: ...


M = TypeVar("M", Counter, Gauge, Histogram)


class _Children(Generic[M]):
    """Bound children of a metric whose first label is the agent, cached by the second label's value.

    ``labels()`` takes a lock and builds a tuple per call; the cache keeps the hot path to one dict lookup.
    """

    def __init__(self, metric: M, agent: str) -> None:
        self._metric: M = metric
        self._agent = agent
        self._bound: dict[str, M] = {}

    def __getitem__(self, value: str) -> M:
        child = self._bound.get(value)
        if child is None:
            child = self._bound[value] = self._metric.labels(self._agent, value)
        return child


class Metrics:
    """Every streamrec metric, registered on ``registry`` and labelled with ``agent`` (the worker's name).

    Names (``streamrec_`` prefix, labels after the agent): ``stage_latency_seconds{stage}``,
    ``request_latency_seconds``, ``requests_total``, ``responses_total{outcome}`` (ok | fallback | error),
    ``errors_total{code}``, ``fallbacks_total{reason}``, ``events_processed_total{type}``,
    ``dead_letters_total{reason}``, ``candidates_total{source}``, ``candidate_source_errors_total{source}``,
    ``filter_drops_total{filter}``, ``feature_freshness_seconds``, ``model_info{kind,version}``,
    ``model_loaded``, ``model_loads_total{outcome}``, ``ann_recall``, ``ann_recall_sampled`` (histogram of
    each sampled search's recall@k), ``feature_psi{feature}``, ``drift_samples``, ``ingest_batch_size``,
    ``ingest_batch_latency_seconds``, ``shadow_overlap`` (overlap@k of champion and challenger),
    ``shadow_rank_correlation``, ``shadow_total{outcome}`` (scored | dropped | unranked | failed).

    >>> m = Metrics(CollectorRegistry(), agent="w1")
    >>> m.observe_stages({"rank": 3.0})
    >>> m.registry.get_sample_value("streamrec_stage_latency_seconds_count", {"agent": "w1", "stage": "rank"})
    1.0
    """

    def __init__(self, registry: CollectorRegistry, *, agent: str = "streamrec") -> None:
        self.registry = registry
        self.agent = agent

        def counter(name: str, doc: str, label: str) -> _Children[Counter]:
            c = Counter(name, doc, ["agent", label], namespace=NAMESPACE, registry=registry)
            return _Children(c, agent)

        def hist(name: str, doc: str, buckets: tuple[float, ...]) -> Histogram:
            h = Histogram(name, doc, ["agent"], namespace=NAMESPACE, buckets=buckets, registry=registry)
            return h.labels(agent)

        stages = Histogram(
            "stage_latency_seconds",
            "Funnel stage latency",
            ["agent", "stage"],
            namespace=NAMESPACE,
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )
        self._stages = _Children(stages, agent)
        self._latency = hist("request_latency_seconds", "Request latency, receipt to reply", LATENCY_BUCKETS)
        self._wait = hist("request_wait_seconds", "Request sent_at to a worker taking it (Kafka)", LATENCY_BUCKETS)
        self._requests = Counter(
            "requests", "Recommendation requests received", ["agent"], namespace=NAMESPACE, registry=registry
        ).labels(agent)
        self._responses = counter("responses", "Responses sent by outcome (ok, fallback, error)", "outcome")
        self._errors = counter("errors", "Error responses by error code", "code")
        self._fallbacks = counter("fallbacks", "Degraded answers by reason", "reason")
        self._events = counter("events_processed", "Events applied to features by type", "type")
        self._dead = counter("dead_letters", "Messages sent to the dead-letter topic by reason", "reason")
        self._candidates = counter("candidates", "Candidates retrieved by source", "source")
        self._source_errors = counter("candidate_source_errors", "Candidate source failures", "source")
        self._drops = counter("filter_drops", "Candidates removed by filter", "filter")
        self._freshness = hist("feature_freshness_seconds", "Event time to online-store write", FRESHNESS_BUCKETS)
        self._model_info = Gauge(
            "model_info",
            "1 for the model version being served",
            ["agent", "kind", "version"],
            namespace=NAMESPACE,
            registry=registry,
        )
        self._model_loaded = Gauge(
            "model_loaded", "1 when a model is loaded and serving", ["agent"], namespace=NAMESPACE, registry=registry
        ).labels(agent)
        self._model_loads = counter("model_loads", "Model load attempts by outcome (ok, failed)", "outcome")
        self._recall = Gauge(
            "ann_recall", "ANN recall@k sampled against exact search", ["agent"], namespace=NAMESPACE, registry=registry
        ).labels(agent)
        self._recall_sampled = hist("ann_recall_sampled", "Recall@k of each sampled ANN search", RECALL_BUCKETS)
        self._psi = Gauge(
            "feature_psi",
            "PSI of a ranker feature or score, live window vs the version's training reference",
            ["agent", "feature"],
            namespace=NAMESPACE,
            registry=registry,
        )
        self._drift_samples = Gauge(
            "drift_samples",
            "Served rows behind the last PSI refresh",
            ["agent"],
            namespace=NAMESPACE,
            registry=registry,
        ).labels(agent)
        self._psi_names: set[str] = set()
        self._batch_size = hist("ingest_batch_size", "Events per ingest batch", BATCH_BUCKETS)
        self._batch_latency = hist("ingest_batch_latency_seconds", "Ingest batch processing time", LATENCY_BUCKETS)
        self._shadow_overlap = hist("shadow_overlap", "Overlap@k of champion and shadow top-k", OVERLAP_BUCKETS)
        self._shadow_rho = hist(
            "shadow_rank_correlation", "Spearman correlation of champion and shadow values", CORRELATION_BUCKETS
        )
        self._shadow = counter("shadow", "Shadow scoring jobs by outcome", "outcome")
        self._versions: dict[str, str] = {}

    def observe_stages(self, stage_ms: Mapping[str, float]) -> None:
        """Record one request's per-stage timings, given in milliseconds (``FunnelResult.stage_ms``)."""
        for stage, ms in stage_ms.items():
            self._stages[stage].observe(ms / 1000.0)

    def request(self) -> None:
        self._requests.inc()

    def request_wait(self, seconds: float) -> None:
        """How long a request waited between its ``sent_at`` and this worker taking it (shed ones included)."""
        self._wait.observe(seconds)

    def response(
        self, latency_s: float, *, error_code: str | None = None, fallback_reasons: Iterable[str] = ()
    ) -> None:
        """Record a reply: an error code makes it an error, otherwise any fallback reason makes it a fallback."""
        self._latency.observe(latency_s)
        if error_code is not None:
            self._responses["error"].inc()
            self._errors[error_code].inc()
            return
        fallback = False
        for reason in fallback_reasons:
            self._fallbacks[reason].inc()
            fallback = True
        self._responses["fallback" if fallback else "ok"].inc()

    def events(self, counts: Mapping[str, int]) -> None:
        """Events applied in one batch, by event type."""
        for kind, n in counts.items():
            self._events[kind].inc(n)

    def dead_letter(self, reason: str) -> None:
        self._dead[reason].inc()

    def candidates(self, per_source: Mapping[str, int], errors: Mapping[str, int] | None = None) -> None:
        """One request's candidates per source (``FunnelResult.source_counts``) and failing sources."""
        for source, n in per_source.items():
            self._candidates[source].inc(n)
        for source, n in (errors or {}).items():
            self._source_errors[source].inc(n)

    def filter_drops(self, per_filter: Mapping[str, int]) -> None:
        for name, n in per_filter.items():
            self._drops[name].inc(n)

    def freshness(self, seconds: Iterable[float]) -> None:
        """Seconds from each event's own timestamp to its store write (negative skew is recorded as 0)."""
        for s in seconds:
            self._freshness.observe(max(0.0, s))

    def model_loaded(self, version: str | None, kind: str = "ranker") -> None:
        """The version now served for ``kind`` (``None``: nothing loaded); the previous version's series is removed."""
        old = self._versions.pop(kind, None)
        if old is not None:
            self._model_info.remove(self.agent, kind, old)
        if version is not None:
            self._versions[kind] = version
            self._model_info.labels(self.agent, kind, version).set(1)
        self._model_loaded.set(1 if self._versions else 0)

    def model_load(self, ok: bool) -> None:
        self._model_loads["ok" if ok else "failed"].inc()

    def ann_recall(self, recall: float) -> None:
        """Mean recall@k of the searches checked in the last round."""
        self._recall.set(recall)

    def ann_recall_sampled(self, recalls: Iterable[float]) -> None:
        for r in recalls:
            self._recall_sampled.observe(r)

    def drift(self, psi: Mapping[str, float], samples: int) -> None:
        """The latest PSI per feature; names no longer reported (another model, or none) are removed."""
        for gone in self._psi_names - set(psi):
            self._psi.remove(self.agent, gone)
        for name, value in psi.items():
            self._psi.labels(self.agent, name).set(value)
        self._psi_names = set(psi)
        self._drift_samples.set(samples)

    def ingest_batch(self, size: int, latency_s: float) -> None:
        self._batch_size.observe(size)
        self._batch_latency.observe(latency_s)

    def shadow(self, overlap: float, correlation: float | None) -> None:
        """One request scored in shadow: its overlap@k and (when defined) its rank correlation."""
        self._shadow_overlap.observe(overlap)
        if correlation is not None:
            self._shadow_rho.observe(correlation)
        self._shadow["scored"].inc()

    def shadow_outcome(self, outcome: str) -> None:
        self._shadow[outcome].inc()


class NullMetrics:
    """Records nothing: metrics switched off (and the baseline when benchmarking their cost)."""

    def observe_stages(self, stage_ms: Mapping[str, float]) -> None:
        pass

    def request(self) -> None:
        pass

    def request_wait(self, seconds: float) -> None:
        pass

    def response(
        self, latency_s: float, *, error_code: str | None = None, fallback_reasons: Iterable[str] = ()
    ) -> None:
        pass

    def events(self, counts: Mapping[str, int]) -> None:
        pass

    def dead_letter(self, reason: str) -> None:
        pass

    def candidates(self, per_source: Mapping[str, int], errors: Mapping[str, int] | None = None) -> None:
        pass

    def filter_drops(self, per_filter: Mapping[str, int]) -> None:
        pass

    def freshness(self, seconds: Iterable[float]) -> None:
        pass

    def model_loaded(self, version: str | None, kind: str = "ranker") -> None:
        pass

    def model_load(self, ok: bool) -> None:
        pass

    def ann_recall(self, recall: float) -> None:
        pass

    def ann_recall_sampled(self, recalls: Iterable[float]) -> None:
        pass

    def drift(self, psi: Mapping[str, float], samples: int) -> None:
        pass

    def ingest_batch(self, size: int, latency_s: float) -> None:
        pass

    def shadow(self, overlap: float, correlation: float | None) -> None:
        pass

    def shadow_outcome(self, outcome: str) -> None:
        pass


def build_metrics(settings: MetricsSettings, registry: CollectorRegistry, agent: str) -> WorkerMetrics:
    """``Metrics`` on ``registry`` when enabled, else ``NullMetrics`` (nothing is registered)."""
    return Metrics(registry, agent=agent) if settings.enabled else NullMetrics()


@dataclass
class MetricsServer:
    """A running ``/metrics`` HTTP endpoint; ``close()`` stops it and frees the port."""

    server: WSGIServer
    thread: threading.Thread

    @property
    def port(self) -> int:
        return int(self.server.server_port)

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=5.0)

    def __enter__(self) -> MetricsServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def serve_metrics(registry: CollectorRegistry, port: int, host: str = "127.0.0.1") -> MetricsServer:
    """Serve ``registry`` on ``http://host:port/metrics`` from a daemon thread (port 0 picks a free one)."""
    server, thread = start_http_server(port, addr=host, registry=registry)
    return MetricsServer(server, thread)


def exported_names(registry: CollectorRegistry) -> frozenset[str]:
    """Every sample name ``registry`` can expose (``_total``, ``_bucket``... included), even before any sample.

    >>> r = CollectorRegistry()
    >>> _ = Counter("hits", "hits", ["k"], registry=r)
    >>> sorted(exported_names(r))
    ['hits_created', 'hits_total']
    """
    suffixes = {
        "counter": ("_total", "_created"),
        "histogram": ("_bucket", "_count", "_sum", "_created"),
        "summary": ("_count", "_sum", "_created"),
        "info": ("_info",),
        "gauge": ("",),
        "unknown": ("",),
    }
    names: set[str] = set()
    for family in registry.collect():
        names.update(family.name + s for s in suffixes.get(family.type, ("",)))
        names.update(s.name for s in family.samples)
    return frozenset(names)
