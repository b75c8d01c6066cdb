"""The Faust app factory: builds the app from settings and registers the agents explicitly."""

from __future__ import annotations

import faust

from agents.runtime import Runtime, RuntimeService
from streams.faust_drain import FastDrainTransport
from streams.quiet_monitor import QuietMonitor
from streams.settings import Settings


def create_app(settings: Settings, runtime: Runtime | None = None) -> faust.App:
    """Build a worker app: at-least-once, raw bytes on the wire (decoded by streams.codec), agents registered."""
    # local import: agents import Faust types only when an app is built
    from agents import events, items, models, monitors, new_items, serve

    w = settings.worker
    app = faust.App(
        w.app_id,
        broker=[f"kafka://{s.strip()}" for s in settings.kafka.bootstrap_servers.split(",")],
        store="memory://",
        datadir=str(w.data_dir),
        processing_guarantee="at_least_once",
        key_serializer="raw",
        value_serializer="raw",
        topic_partitions=settings.kafka.partitions,
        topic_replication_factor=settings.kafka.replication_factor,
        broker_commit_interval=w.commit_interval_s,
        # A crashed worker's partitions move within ~10 s instead of the 60 s default.
        broker_session_timeout=10.0,
        broker_heartbeat_interval=2.0,
        consumer_auto_offset_reset="earliest",
        producer_linger=0.0,
        # Large batches cost nothing at linger 0 and let a consumer batch's changelog go out in a few requests.
        producer_max_batch_size=w.producer_batch_bytes,
        stream_wait_empty=False,
        web_enabled=False,
        monitor=QuietMonitor(),
    )
    # before anything builds a consumer
    app.transport = FastDrainTransport(app.conf.broker_consumer, app, fetch_max_wait_ms=w.fetch_max_wait_ms)
    rt = runtime or Runtime.build(settings)
    app.add_dependency(RuntimeService(rt))
    events.register(app, rt)
    items.register(app, rt)
    serve.register(app, rt)
    models.register(app, rt)
    monitors.register(app, rt)
    new_items.register(app, rt)
    return app
