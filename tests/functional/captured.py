"""Topic sends recorded instead of produced: what the functional tests read the agents' output from."""

from __future__ import annotations

import pytest
from faust.topics import Topic


def capture_sends(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, bytes]]:
    """Record every Topic.send as (topic, value) instead of producing it."""
    sent: list[tuple[str, bytes]] = []

    async def capture(self: Topic, *args: object, **kwargs: object) -> None:
        sent.append((self.get_topic_name(), kwargs["value"]))  # type: ignore[arg-type]

    monkeypatch.setattr(Topic, "send", capture)
    return sent
