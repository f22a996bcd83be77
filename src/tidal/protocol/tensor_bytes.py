"""Tensors to and from raw bytes, as the binary data extension and gRPC carry them."""

from __future__ import annotations

import struct

import numpy as np

from tidal.core.datatypes import DataType
from tidal.core.errors import InferenceError

_LENGTH = struct.Struct("<I")


def element_count(shape: tuple[int, ...]) -> int:
    count = 1
    for dim in shape:
        count *= dim
    return count


def tensor_from_bytes(
    name: str, datatype: DataType, shape: tuple[int, ...], raw: bytes | memoryview
) -> np.ndarray:
    """An array over ``raw`` (no copy for fixed-size types); BYTES elements are length-prefixed."""
    count = element_count(shape)
    if datatype is DataType.BYTES:
        return _deserialize_bytes(name, raw, count).reshape(shape)
    expected = count * datatype.item_size
    if len(raw) != expected:
        raise InferenceError.invalid(
            f"input '{name}': got {len(raw)} bytes of tensor data, but shape {list(shape)} of "
            f"{datatype.value} needs {expected}"
        )
    return np.frombuffer(raw, dtype=datatype.numpy_dtype).reshape(shape)


def tensor_to_bytes(datatype: DataType, array: np.ndarray) -> bytes:
    """The raw bytes of an array; BYTES elements as 4-byte little-endian length plus bytes."""
    if datatype is DataType.BYTES:
        return serialize_bytes(array)
    if not array.dtype.isnative:
        array = array.astype(array.dtype.newbyteorder("="))
    return np.ascontiguousarray(array).tobytes()


def serialize_bytes(array: np.ndarray) -> bytes:
    parts = []
    for item in array.ravel():
        value = item if isinstance(item, bytes) else str(item).encode("utf-8")
        parts.append(_LENGTH.pack(len(value)))
        parts.append(value)
    return b"".join(parts)


def _deserialize_bytes(name: str, raw: bytes | memoryview, count: int) -> np.ndarray:
    view = memoryview(raw)
    items: list[bytes] = []
    offset, end = 0, len(view)
    while offset < end:
        if offset + 4 > end:
            raise InferenceError.invalid(f"input '{name}': truncated BYTES element length")
        (length,) = _LENGTH.unpack_from(view, offset)
        offset += 4
        if offset + length > end:
            raise InferenceError.invalid(
                f"input '{name}': BYTES element of {length} bytes runs past the tensor data"
            )
        items.append(bytes(view[offset : offset + length]))
        offset += length
    if len(items) != count:
        raise InferenceError.invalid(
            f"input '{name}': got {len(items)} BYTES elements, but the shape needs {count}"
        )
    array = np.empty(count, dtype=object)
    array[:] = items
    return array
