"""The one place topic names and their specs are declared."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from streams.settings import KafkaSettings, Settings

EVENTS: Final = "events"
ITEMS: Final = "items"
REC_REQUESTS: Final = "rec-requests"
REC_RESPONSES: Final = "rec-responses"
DEAD_LETTERS: Final = "dead-letters"
IMPRESSIONS: Final = "impressions"
MODEL_UPDATES: Final = "model-updates"
SHADOW: Final = "shadow"
USERS_TABLE: Final = "users"  # the user-state table (agents.events); Faust names its changelog after it


@dataclass(frozen=True, slots=True)
class TopicSpec:
    """A topic as created on the broker."""

    name: str
    partitions: int
    replication_factor: int
    config: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True, slots=True)
class TopicNames:
    """Fully qualified (prefixed) names of every streamrec topic."""

    events: str
    items: str
    rec_requests: str
    rec_responses: str
    dead_letters: str
    impressions: str
    model_updates: str
    shadow: str


def topic_names(kafka: KafkaSettings) -> TopicNames:
    p = kafka.topic_prefix
    return TopicNames(
        events=p + EVENTS,
        items=p + ITEMS,
        rec_requests=p + REC_REQUESTS,
        rec_responses=p + REC_RESPONSES,
        dead_letters=p + DEAD_LETTERS,
        impressions=p + IMPRESSIONS,
        model_updates=p + MODEL_UPDATES,
        shadow=p + SHADOW,
    )


def topic_specs(kafka: KafkaSettings) -> list[TopicSpec]:
    """Every topic streamrec needs.

    Events and requests share a partition count and are keyed by user id (co-partitioned), so the
    worker that owns a user's state also answers that user's requests.
    """
    n, rf, t = kafka.partitions, kafka.replication_factor, topic_names(kafka)
    week = ("retention.ms", str(7 * 24 * 3600 * 1000))
    return [
        TopicSpec(t.events, n, rf, (week,)),
        TopicSpec(t.rec_requests, n, rf, (("retention.ms", str(3600 * 1000)),)),
        TopicSpec(t.rec_responses, n, rf, (("retention.ms", str(3600 * 1000)),)),
        TopicSpec(t.items, n, rf, (("cleanup.policy", "compact"),)),
        TopicSpec(t.dead_letters, 1, rf, (week,)),
        TopicSpec(t.impressions, n, rf, (week,)),
        # One partition: updates are totally ordered; every worker reads all of it without a group.
        TopicSpec(t.model_updates, 1, rf, (week,)),
        TopicSpec(t.shadow, n, rf, (week,)),
    ]


def app_topics(app_id: str) -> list[str]:
    """Topics Faust creates for an app by itself: its table's changelog and its partition assignor's leader
    topic. A run that drops its topics (tests, benchmarks, the demo, replay) drops these too."""
    return [f"{app_id}-{USERS_TABLE}-changelog", f"{app_id}-__assignor-__leader"]


def run_topics(settings: Settings) -> list[str]:
    """Every topic a run with ``settings`` creates: its prefixed topics and those Faust creates for its app."""
    return [s.name for s in topic_specs(settings.kafka)] + app_topics(settings.worker.app_id)
