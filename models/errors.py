"""Errors raised by model data loading, training, export, evaluation and the registry."""

from __future__ import annotations

from streams.errors import StreamrecError


class ModelError(StreamrecError):
    """A model could not be built, trained, exported or loaded."""


class DataError(ModelError):
    """A dataset file is missing or malformed; the message names the file and the line."""


class RegistryError(ModelError):
    """A registry version is missing, corrupt, or inconsistent with its manifest."""


class AnnError(ModelError):
    """An ANN index could not be built, searched, saved or loaded."""
