"""The feature spec shipped with every model version: each ONNX file's inputs, in order, with dtypes and defaults."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

DType = Literal["float32", "int64"]


class _Spec(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class TensorSpec(_Spec):
    """One ONNX input or output. ``shape`` uses ``None`` for the dynamic batch axis.

    For a 2-D feature matrix, ``columns`` names every column in order and ``defaults`` gives the value
    serving must use when a feature is unknown; ``padding`` is the fill value of id sequences; for an
    index input, ``vocab[i]`` is the value that index ``i + 1`` stands for (0 = unknown).
    """

    name: str
    dtype: DType
    shape: list[int | None]
    columns: list[str] | None = None
    defaults: list[float] | None = None
    padding: int | None = None
    vocab: list[str] | None = None
    doc: str = ""


class OnnxSpec(_Spec):
    """An ONNX file of a version and the tensors it must expose."""

    file: str
    inputs: list[TensorSpec]
    outputs: list[TensorSpec]


class FeatureSpec(_Spec):
    """All serving graphs of one version, keyed by role (``user_tower``, ``item_tower``, ``ranker``)."""

    schema_version: Literal[1] = 1
    graphs: dict[str, OnnxSpec] = Field(default_factory=dict)
    index_file: str | None = None
    item_ids_file: str | None = None
    embedding_dim: int | None = None
