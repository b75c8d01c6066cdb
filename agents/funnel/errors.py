"""Errors of the serving funnel; all derive from ``StreamrecError``."""

from __future__ import annotations

from streams.errors import StreamrecError


class FunnelError(StreamrecError):
    """Root of the funnel's errors."""


class RankerError(FunnelError):
    """The ranker could not score a batch (bad shape, runtime failure); the funnel degrades to retrieval order."""
