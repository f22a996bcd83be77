"""The wire between the server and a worker: framed messages on a socket, tensors in shared memory.

Control messages are small pickled tuples. Tensor bytes travel through two shared-memory
arenas (one per direction) that the server creates once per worker; a message carries only
``(name, datatype, shape, location)`` for each tensor. Each arena is a bump allocator reset at
the start of every ``execute``, so allocation costs a few integer operations. A tensor that does
not fit travels inside the message instead.
"""

from __future__ import annotations

import contextlib
import mmap
import os
import pickle
import socket
import struct
import sys
import tempfile
from typing import Any

import numpy as np

_HEADER = struct.Struct("<I")
_ALIGN = 64

# v2 protocol datatype -> numpy dtype; BF16 travels as its raw uint16 bits.
NUMPY_DTYPES: dict[str, np.dtype] = {
    "BOOL": np.dtype(np.bool_),
    "UINT8": np.dtype(np.uint8),
    "UINT16": np.dtype(np.uint16),
    "UINT32": np.dtype(np.uint32),
    "UINT64": np.dtype(np.uint64),
    "INT8": np.dtype(np.int8),
    "INT16": np.dtype(np.int16),
    "INT32": np.dtype(np.int32),
    "INT64": np.dtype(np.int64),
    "FP16": np.dtype(np.float16),
    "BF16": np.dtype(np.uint16),
    "FP32": np.dtype(np.float32),
    "FP64": np.dtype(np.float64),
    "BYTES": np.dtype(object),
}
_DATATYPES = {dtype: name for name, dtype in NUMPY_DTYPES.items() if name not in ("BF16",)}

# (name, datatype, shape, location); location is (offset, nbytes) in an arena or inline bytes.
WireTensor = tuple[str, str, tuple[int, ...], Any]


class WorkerDied(Exception):
    """The other end of the channel is gone."""


class Channel:
    """Length-prefixed pickled messages over a connected stream socket."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self._header = bytearray(_HEADER.size)

    def send(self, message: Any) -> None:
        payload = pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL)
        try:
            self.sock.sendall(_HEADER.pack(len(payload)) + payload)
        except OSError as exc:
            raise WorkerDied(str(exc)) from None

    def recv(self) -> Any:
        self._fill(memoryview(self._header))
        (size,) = _HEADER.unpack(self._header)
        payload = bytearray(size)
        self._fill(memoryview(payload))
        return pickle.loads(payload)

    def _fill(self, view: memoryview) -> None:
        while view:
            try:
                received = self.sock.recv_into(view)
            except OSError as exc:
                raise WorkerDied(str(exc)) from None
            if received == 0:
                raise WorkerDied("connection closed")
            view = view[received:]

    def close(self) -> None:
        self.sock.close()


class Arena:
    """A shared-memory region used as a bump allocator for one direction of tensor traffic."""

    def __init__(self, fd: int, size: int) -> None:
        self.size = size
        self._map = mmap.mmap(fd, size)
        self._top = 0

    def reset(self) -> None:
        self._top = 0

    def put(self, array: np.ndarray) -> Any:
        """Copy ``array`` (never BYTES) into the arena; return its location."""
        nbytes = array.nbytes
        start = self._top
        if start + nbytes > self.size:
            return np.ascontiguousarray(array).tobytes()
        self._top = start + (nbytes + _ALIGN - 1) // _ALIGN * _ALIGN
        if nbytes:
            target = np.ndarray(array.shape, array.dtype, buffer=self._map, offset=start)
            np.copyto(target, array, casting="no")
        return (start, nbytes)

    def put_bytes(self, data: bytes) -> Any:
        start = self._top
        if start + len(data) > self.size:
            return data
        self._top = start + (len(data) + _ALIGN - 1) // _ALIGN * _ALIGN
        self._map[start : start + len(data)] = data
        return (start, len(data))

    def view(self, location: Any, dtype: np.dtype, shape: tuple[int, ...]) -> np.ndarray:
        """A writable array over a location (no copy when it lies in the arena)."""
        if isinstance(location, bytes):
            return np.frombuffer(bytearray(location), dtype=dtype).reshape(shape)
        offset, nbytes = location
        if nbytes == 0:
            return np.zeros(shape, dtype=dtype)
        return np.ndarray(shape, dtype, buffer=self._map, offset=offset)

    def raw(self, location: Any) -> bytes | memoryview:
        if isinstance(location, bytes):
            return location
        offset, nbytes = location
        return memoryview(self._map)[offset : offset + nbytes]

    def close(self) -> None:
        # BufferError: an array still views the map; the OS frees it with the process.
        with contextlib.suppress(BufferError):
            self._map.close()


def encode_tensor(arena: Arena, name: str, datatype: str, array: np.ndarray) -> WireTensor:
    """Put ``array`` into ``arena`` and describe it."""
    shape = tuple(int(d) for d in array.shape)
    if datatype == "BYTES":
        return (name, datatype, shape, arena.put_bytes(serialize_bytes(array)))
    return (name, datatype, shape, arena.put(array))


def decode_tensor(arena: Arena, tensor: WireTensor, *, copy: bool) -> np.ndarray:
    """The array a wire tensor describes: a view into ``arena``, or a private copy."""
    _, datatype, shape, location = tensor
    if datatype == "BYTES":
        return deserialize_bytes(arena.raw(location), shape)
    array = arena.view(location, NUMPY_DTYPES[datatype], shape)
    return array.copy() if copy and not isinstance(location, bytes) else array


def datatype_of(array: np.ndarray) -> str:
    """The v2 datatype of a numpy array; raise ``TypeError`` for one the protocol lacks."""
    if array.dtype.kind in "OSU":
        return "BYTES"
    try:
        return _DATATYPES[array.dtype]
    except KeyError:
        raise TypeError(f"numpy dtype {array.dtype} has no Triton datatype") from None


def serialize_bytes(array: np.ndarray) -> bytes:
    """Triton's BYTES layout: each element as a 4-byte little-endian length, then its bytes."""
    parts = []
    for item in array.ravel():
        if isinstance(item, str):
            item = item.encode("utf-8")
        elif not isinstance(item, bytes | bytearray):
            item = str(item).encode("utf-8")
        parts.append(_HEADER.pack(len(item)))
        parts.append(item)
    return b"".join(parts)


def deserialize_bytes(data: bytes | memoryview, shape: tuple[int, ...] | None = None) -> np.ndarray:
    """The object array of ``bytes`` that ``serialize_bytes`` wrote."""
    items = []
    view = memoryview(data)
    offset, end = 0, len(view)
    while offset < end:
        (size,) = _HEADER.unpack_from(view, offset)
        offset += _HEADER.size
        items.append(bytes(view[offset : offset + size]))
        offset += size
    array = np.empty(len(items), dtype=object)
    array[:] = items
    return array.reshape(shape) if shape is not None else array


def shared_memory_fd(size: int) -> int:
    """An anonymous file of ``size`` bytes to map in both processes (memfd on Linux)."""
    if hasattr(os, "memfd_create") and sys.platform.startswith("linux"):
        fd = os.memfd_create("tidal-python-model", 0)
    else:
        handle, path = tempfile.mkstemp(prefix="tidal-python-model-")
        os.unlink(path)
        fd = handle
    os.ftruncate(fd, size)
    return fd
