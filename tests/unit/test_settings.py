"""The settings tree: env with one prefix, frozen, unknown names rejected, passed to children intact."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from streams.settings import Settings, child_env, load_settings
from streams.topics import topic_names, topic_specs


def test_env_is_read_with_prefix_and_nesting(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STREAMREC_KAFKA__PARTITIONS", "7")
    monkeypatch.setenv("STREAMREC_KAFKA__TOPIC_PREFIX", "t1.")
    s = load_settings()
    assert s.kafka.partitions == 7
    assert topic_names(s.kafka).events == "t1.events"
    assert {spec.partitions for spec in topic_specs(s.kafka) if spec.name.endswith(("events", "rec-requests"))} == {7}


def test_settings_are_frozen_and_strict() -> None:
    s = load_settings()
    with pytest.raises(ValidationError):
        s.kafka.partitions = 3  # type: ignore[misc]
    with pytest.raises(ValidationError):
        Settings(kafka={"no_such_field": 1})  # type: ignore[arg-type]


def test_child_env_reproduces_the_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    s = load_settings(kafka={"topic_prefix": "x.", "partitions": 3}, worker={"batch_size": 17})
    for key, value in child_env(s).items():
        if key.startswith("STREAMREC_"):
            monkeypatch.setenv(key, value)
    assert load_settings() == s


def test_exploration_policy_must_be_allowed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STREAMREC_SERVING__EXPLORATION_POLICY", "thompson")
    monkeypatch.setenv("STREAMREC_SERVING__ALLOWED_POLICIES", '["thompson", "none"]')
    s = load_settings()
    assert s.serving.exploration_policy == "thompson" and s.serving.allowed_policies == ("thompson", "none")
    with pytest.raises(ValidationError, match="not in allowed_policies"):
        load_settings(serving={"exploration_policy": "epsilon", "allowed_policies": ["none"]})
    with pytest.raises(ValidationError):
        load_settings(serving={"exploration_policy": "ucb"})
