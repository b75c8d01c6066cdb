"""The error root of streamrec and the errors raised at the Kafka edge."""

from __future__ import annotations


class StreamrecError(Exception):
    """Root of every error streamrec raises on purpose."""


class ConfigError(StreamrecError):
    """Settings are invalid or name something unknown."""


class DecodeError(StreamrecError):
    """A message could not be decoded into a record.

    ``reason`` is a short machine-readable code (``not_json``, ``invalid``, ``too_large``...),
    the message carries the human-readable detail.
    """

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


class RequestTimeoutError(StreamrecError):
    """No response arrived for a correlation id before its deadline."""

    def __init__(self, correlation_id: str, deadline_ms: float) -> None:
        super().__init__(f"no response for correlation id {correlation_id!r} within {deadline_ms:.0f} ms")
        self.correlation_id = correlation_id
        self.deadline_ms = deadline_ms


class InfraError(StreamrecError):
    """A backing service (Kafka, Redis) could not be reached or refused an operation."""


class JobError(StreamrecError):
    """A job record is missing, unreadable, or asked to move to a status it cannot reach."""
