"""Errors raised by the state package (online store, codecs); all derive from ``StreamrecError``."""

from __future__ import annotations

from streams.errors import InfraError, StreamrecError


class StateError(StreamrecError):
    """Root of the state package's errors."""


class StateDecodeError(StateError):
    """Stored bytes could not be decoded (corrupt, truncated or from an unknown schema version)."""


class StoreError(StateError):
    """The online store refused an operation or returned something unusable."""


class StoreUnavailable(StoreError, InfraError):
    """The online store could not be reached (connection refused, timeout)."""
