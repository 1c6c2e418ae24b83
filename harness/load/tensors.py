"""Tensors in Triton's raw binary layout: generated for a datatype, read from JSON values, encoded, decoded.

Generated values are valid for every model that takes the datatype (small non-negative integers, standard
normal floats, ASCII letters for BYTES), and deterministic for a seed. The binary layout is the one both of
Triton's protocols carry (HTTP's binary-tensor extension, gRPC's ``raw_input_contents``): little-endian
elements, BYTES as a 4-byte length before each element, BF16 as the upper half of a float32.
"""

from __future__ import annotations

import struct
from collections.abc import Mapping
from typing import Any

import numpy as np
import numpy.typing as npt

__all__ = ["SUPPORTED", "decode_tensor", "encode_tensor", "from_values", "generate"]

_NUMPY: Mapping[str, Any] = {
    "BOOL": np.bool_, "UINT8": np.uint8, "UINT16": np.uint16, "UINT32": np.uint32, "UINT64": np.uint64,
    "INT8": np.int8, "INT16": np.int16, "INT32": np.int32, "INT64": np.int64, "FP16": np.float16,
    "FP32": np.float32, "FP64": np.float64,
}
_STRING_LENGTH = 16
SUPPORTED = frozenset({*_NUMPY, "BYTES", "BF16"})


def encode_tensor(values: npt.NDArray[Any], datatype: str) -> bytes:
    """Triton's raw binary form of a tensor: little-endian elements, BYTES as 4-byte length + bytes."""
    if datatype == "BYTES":
        out = bytearray()
        for item in values.reshape(-1):
            raw = item if isinstance(item, bytes) else str(item).encode()
            out += struct.pack("<I", len(raw)) + raw
        return bytes(out)
    if datatype == "BF16":  # the upper half of each float32
        as_f32 = np.ascontiguousarray(values, dtype="<f4")
        return (as_f32.view("<u4") >> 16).astype("<u2").tobytes()
    return np.ascontiguousarray(values, dtype=np.dtype(_NUMPY[datatype]).newbyteorder("<")).tobytes()


def generate(datatype: str, shape: tuple[int, ...], rng: np.random.Generator) -> npt.NDArray[Any]:
    """Values every model accepts for the datatype: small non-negative integers, normal floats, ASCII."""
    if datatype == "BYTES":
        letters = rng.integers(97, 123, size=(*shape, _STRING_LENGTH), dtype=np.uint8)
        flat = [bytes(row) for row in letters.reshape(-1, _STRING_LENGTH)]
        return np.array(flat, dtype=np.object_).reshape(shape)
    if datatype == "BOOL":
        return rng.integers(0, 2, size=shape).astype(np.bool_)
    if datatype in ("FP16", "BF16", "FP32", "FP64"):
        return rng.standard_normal(shape).astype(np.float32 if datatype == "BF16" else _NUMPY[datatype])
    return rng.integers(0, 100, size=shape).astype(_NUMPY[datatype])


def from_values(values: Any, datatype: str) -> npt.NDArray[Any]:
    if datatype == "BYTES":
        flat = np.array(values, dtype=np.object_).reshape(-1)
        return np.array([v if isinstance(v, bytes) else str(v).encode() for v in flat], dtype=np.object_)
    dtype = np.float32 if datatype == "BF16" else _NUMPY[datatype]
    return np.array(values, dtype=dtype).reshape(-1)


def decode_tensor(raw: bytes, datatype: str) -> npt.NDArray[Any]:
    if datatype == "BYTES":
        items, i = [], 0
        while i < len(raw):
            (n,) = struct.unpack_from("<I", raw, i)
            items.append(raw[i + 4:i + 4 + n])
            i += 4 + n
        return np.array(items, dtype=np.object_)
    if datatype == "BF16":
        return (np.frombuffer(raw, dtype="<u2").astype("<u4") << 16).view("<f4")
    return np.frombuffer(raw, dtype=np.dtype(_NUMPY[datatype]).newbyteorder("<"))
