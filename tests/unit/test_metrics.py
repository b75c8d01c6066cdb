"""Worker metrics and the lag collector on private registries, `streamrec lag`, and the infra files over them.

The lag unit tests live here: a ``tests/unit/test_lag.py`` would clash with ``tests/integration/test_lag.py``
(same basename, and the test folders are not packages).
"""

from __future__ import annotations

import asyncio
import json
import re
import urllib.request
from collections.abc import Sequence
from pathlib import Path

import pytest
import typer
from aiokafka import TopicPartition
from prometheus_client import CollectorRegistry
from typer.testing import CliRunner

from streams import cli_ops
from streams.errors import InfraError
from streams.lag import LagCollector, LagSnapshot, PartitionLag, breaches, partition_lag, run_exporter
from streams.metrics import (
    Metrics,
    NullMetrics,
    WorkerMetrics,
    build_metrics,
    exported_names,
    serve_metrics,
)
from streams.settings import KafkaSettings, LagSettings, MetricsSettings, load_settings

INFRA = Path(__file__).resolve().parents[2] / "infra"
METRIC = re.compile(r"\bstreamrec_[a-z0-9_]+")


@pytest.fixture
def reg() -> CollectorRegistry:
    return CollectorRegistry()


@pytest.fixture
def m(reg: CollectorRegistry) -> Metrics:
    return Metrics(reg, agent="w1")


def _v(reg: CollectorRegistry, name: str, **labels: str) -> float | None:
    return reg.get_sample_value(name, {"agent": "w1", **labels})


def test_stage_latency_is_recorded_in_seconds(m: Metrics, reg: CollectorRegistry) -> None:
    m.observe_stages({"retrieve": 3.0, "rank": 0.4})
    m.observe_stages({"retrieve": 7.0})
    assert _v(reg, "streamrec_stage_latency_seconds_count", stage="retrieve") == 2.0
    assert _v(reg, "streamrec_stage_latency_seconds_sum", stage="retrieve") == pytest.approx(0.010)
    assert _v(reg, "streamrec_stage_latency_seconds_bucket", stage="rank", le="0.0005") == 1.0
    assert _v(reg, "streamrec_stage_latency_seconds_bucket", stage="retrieve", le="0.005") == 1.0


def test_responses_split_into_ok_fallback_and_error(m: Metrics, reg: CollectorRegistry) -> None:
    for _ in range(3):
        m.request()
    m.response(0.010)
    m.response(0.020, fallback_reasons=["no_ranker", "source:ann"])
    m.response(0.300, error_code="deadline_exceeded", fallback_reasons=["ignored"])
    assert _v(reg, "streamrec_requests_total") == 3.0
    assert [_v(reg, "streamrec_responses_total", outcome=o) for o in ("ok", "fallback", "error")] == [1.0, 1.0, 1.0]
    assert _v(reg, "streamrec_errors_total", code="deadline_exceeded") == 1.0
    assert _v(reg, "streamrec_fallbacks_total", reason="no_ranker") == 1.0
    assert _v(reg, "streamrec_fallbacks_total", reason="ignored") is None
    assert _v(reg, "streamrec_request_latency_seconds_count") == 3.0
    assert _v(reg, "streamrec_request_latency_seconds_bucket", le="0.025") == 2.0


def test_counts_by_type_reason_source_and_filter(m: Metrics, reg: CollectorRegistry) -> None:
    m.events({"view": 5, "click": 2})
    m.events({"view": 1})
    m.dead_letter("not_json")
    m.dead_letter("not_json")
    m.candidates({"ann": 600, "trending": 200}, errors={"covisit": 1})
    m.candidates({"ann": 400})
    m.filter_drops({"seen": 7, "unavailable": 1})
    assert _v(reg, "streamrec_events_processed_total", type="view") == 6.0
    assert _v(reg, "streamrec_events_processed_total", type="click") == 2.0
    assert _v(reg, "streamrec_dead_letters_total", reason="not_json") == 2.0
    assert _v(reg, "streamrec_candidates_total", source="ann") == 1000.0
    assert _v(reg, "streamrec_candidate_source_errors_total", source="covisit") == 1.0
    assert _v(reg, "streamrec_filter_drops_total", filter="seen") == 7.0


def test_freshness_ingest_and_recall(m: Metrics, reg: CollectorRegistry) -> None:
    m.freshness([0.2, 3.0, -1.0])
    m.ingest_batch(500, 0.04)
    m.ann_recall(0.93)
    assert _v(reg, "streamrec_feature_freshness_seconds_count") == 3.0
    assert _v(reg, "streamrec_feature_freshness_seconds_sum") == pytest.approx(3.2)  # skew clamps to 0
    assert _v(reg, "streamrec_feature_freshness_seconds_bucket", le="0.25") == 2.0
    assert _v(reg, "streamrec_ingest_batch_size_sum") == 500.0
    assert _v(reg, "streamrec_ingest_batch_latency_seconds_count") == 1.0
    assert _v(reg, "streamrec_ann_recall") == 0.93


def test_model_info_keeps_only_the_served_version(m: Metrics, reg: CollectorRegistry) -> None:
    m.model_loaded("v1")
    m.model_loaded("v2")
    m.model_load(ok=True)
    m.model_load(ok=False)
    assert _v(reg, "streamrec_model_info", kind="ranker", version="v1") is None
    assert _v(reg, "streamrec_model_info", kind="ranker", version="v2") == 1.0
    assert _v(reg, "streamrec_model_loaded") == 1.0
    assert _v(reg, "streamrec_model_loads_total", outcome="failed") == 1.0
    m.model_loaded(None)
    assert _v(reg, "streamrec_model_loaded") == 0.0
    assert _v(reg, "streamrec_model_info", kind="ranker", version="v2") is None


def test_two_workers_share_nothing_and_disabled_registers_nothing() -> None:
    a, b = CollectorRegistry(), CollectorRegistry()
    Metrics(a, agent="w1").request()
    Metrics(b, agent="w1")
    assert a.get_sample_value("streamrec_requests_total", {"agent": "w1"}) == 1.0
    assert b.get_sample_value("streamrec_requests_total", {"agent": "w1"}) == 0.0
    off = CollectorRegistry()
    null: WorkerMetrics = build_metrics(MetricsSettings(enabled=False), off, "w1")
    assert isinstance(null, NullMetrics)
    null.request()
    null.response(0.1, error_code="internal")
    assert list(off.collect()) == []
    assert isinstance(build_metrics(MetricsSettings(), CollectorRegistry(), "w1"), Metrics)


def test_serve_metrics_exposes_the_registry_and_closes(m: Metrics, reg: CollectorRegistry) -> None:
    m.dead_letter("too_large")
    with serve_metrics(reg, 0) as server:
        with urllib.request.urlopen(f"http://127.0.0.1:{server.port}/metrics", timeout=5) as resp:
            text = resp.read().decode()
        port = server.port
    assert 'streamrec_dead_letters_total{agent="w1",reason="too_large"} 1.0' in text
    with pytest.raises(OSError), urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=1):
        pass


def _defined_names() -> frozenset[str]:
    reg = CollectorRegistry()
    Metrics(reg)
    LagCollector(reg)
    return exported_names(reg)


def _referenced(exprs: list[str]) -> set[str]:
    return {name for e in exprs for name in METRIC.findall(e)}


def _alert_rules(text: str) -> list[dict[str, str]]:
    """A structural reading of alerts.yml (PyYAML is not a dependency): one dict of scalar keys per rule."""
    rules: list[dict[str, str]] = []
    for line in text.splitlines():
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        key, sep, value = line.strip().removeprefix("- ").partition(":")
        if key == "alert":
            rules.append({})
        if sep and rules and value.strip():
            rules[-1][key] = value.strip().strip('"')
    return rules


def test_alert_rules_are_complete_and_name_only_defined_metrics() -> None:
    text = (INFRA / "prometheus" / "alerts.yml").read_text()
    assert text.startswith("#") and "\ngroups:\n" in text
    rules = _alert_rules(text)
    names = [r["alert"] for r in rules]
    assert len(names) == len(set(names)) >= 10
    for rule in rules:
        assert {"alert", "expr", "severity", "summary", "description"} <= rule.keys(), rule
        assert rule["severity"] in {"warning", "critical"}
        assert rule["expr"].count("(") == rule["expr"].count(")"), rule["expr"]
    used = _referenced([r["expr"] for r in rules])
    assert used - _defined_names() == set()
    for needed in (
        "streamrec_consumer_lag_seconds",
        "streamrec_consumer_lag_messages",
        "streamrec_request_latency_seconds_bucket",
        "streamrec_responses_total",
        "streamrec_dead_letters_total",
        "streamrec_feature_freshness_seconds_bucket",
        "streamrec_model_loaded",
    ):
        assert needed in used, needed


def test_prometheus_config_loads_the_rules_and_scrapes_workers_and_exporter() -> None:
    text = (INFRA / "prometheus" / "prometheus.yml").read_text()
    assert "rule_files:\n  - alerts.yml" in text
    assert "job_name: streamrec-workers" in text and "job_name: streamrec-lag" in text
    assert "127.0.0.1:9100" in text and "127.0.0.1:9308" in text


def test_dashboard_is_grafana_json_over_defined_metrics() -> None:
    dash = json.loads((INFRA / "grafana" / "dashboard.json").read_text())
    assert dash["uid"] and dash["title"] and isinstance(dash["schemaVersion"], int)
    panels = dash["panels"]
    assert len({p["id"] for p in panels}) == len(panels)
    exprs: list[str] = []
    for p in panels:
        assert {"x", "y", "w", "h"} <= p["gridPos"].keys() and p["gridPos"]["x"] + p["gridPos"]["w"] <= 24
        if p["type"] != "row":
            assert p["targets"], p["title"]
            refs = [t["refId"] for t in p["targets"]]
            assert len(refs) == len(set(refs))
            exprs += [t["expr"] for t in p["targets"]]
    assert all(e.count("(") == e.count(")") for e in exprs)
    used = _referenced(exprs)
    assert used - _defined_names() == set()
    titles = " ".join(p["title"].lower() for p in panels)
    for topic in ("lag", "latency", "throughput", "errors", "fallback", "freshness", "dead letters", "model"):
        assert topic in titles, topic


# --- consumer lag -------------------------------------------------------------------------------------------

TP = TopicPartition("events", 2)


def _snap(*rows: PartitionLag, at: float = 1000.0) -> LagSnapshot:
    return LagSnapshot(at, rows)


ROWS = (
    PartitionLag("app", "events", 0, 10, 0, 10, 0, 0.0),
    PartitionLag("app", "events", 1, 4, 0, 10, 6, 42.5),
    PartitionLag("app", "events", 2, None, 0, 10, 10, None),
)


def test_lag_counts_from_the_commit_or_the_log_start() -> None:
    assert partition_lag("g", TP, 4, 0, 10, first_ts_ms=990_000, now=1000.0) == PartitionLag(
        "g", "events", 2, 4, 0, 10, 6, 10.0
    )
    caught_up = partition_lag("g", TP, 10, 0, 10, first_ts_ms=None, now=1000.0)
    assert (caught_up.lag_messages, caught_up.lag_seconds) == (0, 0.0)
    never = partition_lag("g", TP, None, 0, 7, first_ts_ms=None, now=1000.0)
    assert (never.committed, never.lag_messages, never.lag_seconds) == (None, 7, None)
    retained_past = partition_lag("g", TP, 2, 5, 9, first_ts_ms=999_000, now=1000.0)  # retention deleted 2..4
    assert (retained_past.lag_messages, retained_past.lag_seconds) == (4, 1.0)
    future = partition_lag("g", TP, 0, 0, 1, first_ts_ms=2_000_000, now=1000.0)  # producer clock ahead
    assert future.lag_seconds == 0.0


def test_breaches_apply_either_threshold() -> None:
    assert breaches(ROWS) == []
    assert [r.partition for r in breaches(ROWS, max_messages=6)] == [2]
    assert [r.partition for r in breaches(ROWS, max_messages=5)] == [1, 2]
    assert [r.partition for r in breaches(ROWS, max_seconds=42.0)] == [1]  # unknown seconds never breach
    assert [r.partition for r in breaches(ROWS, max_messages=100, max_seconds=0.0)] == [1]


def test_collector_exposes_the_latest_snapshot() -> None:
    reg = CollectorRegistry()
    collector = LagCollector(reg)
    assert reg.get_sample_value("streamrec_lag_exporter_up") == 0.0
    assert reg.get_sample_value("streamrec_lag_exporter_last_success_timestamp_seconds") is None
    collector.update(_snap(*ROWS))

    def v(name: str, p: int) -> float | None:
        return reg.get_sample_value(name, {"group": "app", "topic": "events", "partition": str(p)})

    assert [v("streamrec_consumer_lag_messages", p) for p in range(3)] == [0.0, 6.0, 10.0]
    assert [v("streamrec_consumer_committed_offset", p) for p in range(3)] == [10.0, 4.0, None]
    assert [v("streamrec_consumer_end_offset", p) for p in range(3)] == [10.0, 10.0, 10.0]
    assert [v("streamrec_consumer_lag_seconds", p) for p in range(3)] == [0.0, 42.5, None]
    assert reg.get_sample_value("streamrec_lag_exporter_up") == 1.0
    collector.failed()
    assert reg.get_sample_value("streamrec_lag_exporter_up") == 0.0
    assert v("streamrec_consumer_lag_messages", 1) == 6.0  # the last good numbers stay
    assert reg.get_sample_value("streamrec_lag_exporter_last_success_timestamp_seconds") == 1000.0


class _FlakyMonitor:
    """Fails the first poll, then returns a snapshot."""

    def __init__(self) -> None:
        self.calls = 0

    async def snapshot(self, groups: Sequence[str] | None = None) -> LagSnapshot:
        self.calls += 1
        if self.calls == 1:
            raise InfraError("broker down")
        return _snap(*ROWS)


def test_exporter_loop_survives_a_failed_poll() -> None:
    reg = CollectorRegistry()
    collector = LagCollector(reg)
    monitor = _FlakyMonitor()
    seen: list[float | None] = []

    async def main() -> None:
        stop = asyncio.Event()

        def on_poll(snap: LagSnapshot | None) -> None:
            seen.append(reg.get_sample_value("streamrec_lag_exporter_up"))
            if snap is not None:
                stop.set()

        await run_exporter(monitor, collector, ["app"], interval_s=0.01, stop=stop, on_poll=on_poll)  # type: ignore[arg-type]

    asyncio.run(main())
    assert seen == [0.0, 1.0]
    assert monitor.calls == 2


@pytest.fixture
def cli(monkeypatch: pytest.MonkeyPatch) -> tuple[typer.Typer, list[Sequence[str]]]:
    asked: list[Sequence[str]] = []

    def fake(kafka: KafkaSettings, groups: Sequence[str], timeout_s: float) -> LagSnapshot:
        asked.append(groups)
        return _snap(*ROWS)

    monkeypatch.setattr(cli_ops, "take_snapshot", fake)
    app = typer.Typer()
    cli_ops.register(app)
    return app, asked


def test_lag_command_prints_a_table_and_passes_under_thresholds(cli: tuple[typer.Typer, list[Sequence[str]]]) -> None:
    app, asked = cli
    result = CliRunner().invoke(app, ["lag", "--group", "app", "--max-lag-messages", "10"])
    assert result.exit_code == 0, result.output
    assert "events" in result.output and "42.5" in result.output and "16 messages behind" in result.output
    assert asked == [["app"]]


def test_lag_command_exits_3_on_breach_and_writes_json(cli: tuple[typer.Typer, list[Sequence[str]]]) -> None:
    app, _ = cli
    result = CliRunner().invoke(app, ["lag", "--json", "--max-lag-seconds", "30"])
    assert result.exit_code == cli_ops.BREACH_EXIT == 3
    doc = json.loads(result.output)
    assert doc["breaches"] == 1
    assert [r["lag_messages"] for r in doc["rows"]] == [0, 6, 10]
    assert doc["rows"][2]["committed"] is None


def test_lag_watch_refreshes(cli: tuple[typer.Typer, list[Sequence[str]]]) -> None:
    app, asked = cli
    result = CliRunner().invoke(app, ["lag", "--watch", "--count", "3", "--interval", "0.1", "--json"])
    assert result.exit_code == 0, result.output
    assert len(result.output.strip().splitlines()) == 3 == len(asked)
    assert asked[0] == []  # no --group and no configured groups: every group


def test_lag_settings_default_until_the_section_exists() -> None:
    assert cli_ops.lag_settings(load_settings()) == LagSettings()
