"""Compact bytes for embedding vectors: a one-byte dtype tag then little-endian float16 or float32."""

from __future__ import annotations

from typing import Literal

import numpy as np
import numpy.typing as npt

from state.errors import StateDecodeError

VectorDtype = Literal["float16", "float32"]
_TAGS: dict[str, bytes] = {"float16": b"h", "float32": b"f"}
_DTYPES: dict[bytes, np.dtype[np.floating]] = {b"h": np.dtype("<f2"), b"f": np.dtype("<f4")}


def encode_vector(vec: npt.ArrayLike, dtype: VectorDtype = "float16") -> bytes:
    """Serialise a 1-d vector.

    >>> len(encode_vector([1.0, 2.0, 3.0]))
    7
    """
    arr = np.asarray(vec, dtype=np.float32).reshape(-1)
    tag = _TAGS[dtype]
    return tag + arr.astype(_DTYPES[tag]).tobytes()


def decode_vector(raw: bytes) -> npt.NDArray[np.float32]:
    """Inverse of :func:`encode_vector`, always returned as float32.

    >>> decode_vector(encode_vector([0.5, -1.0], "float32")).tolist()
    [0.5, -1.0]
    """
    dt = _DTYPES.get(raw[:1])
    if dt is None or (len(raw) - 1) % dt.itemsize:
        raise StateDecodeError(f"not an encoded vector: {raw[:16]!r}")
    return np.frombuffer(raw, dtype=dt, offset=1).astype(np.float32)
