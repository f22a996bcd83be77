"""The wire between the server and a Python-model worker: arenas, tensors, framed messages."""

from __future__ import annotations

import os
import socket
import threading

import numpy as np
import pytest

from tidal.backends.python.worker.channel import (
    Arena,
    Channel,
    WorkerDied,
    datatype_of,
    decode_tensor,
    deserialize_bytes,
    encode_tensor,
    serialize_bytes,
    shared_memory_fd,
)


@pytest.fixture
def arena_pair():
    """Two mappings of one shared-memory file, as the server and the worker hold them."""
    fd = shared_memory_fd(4096)
    writer, reader = Arena(fd, 4096), Arena(fd, 4096)
    os.close(fd)
    yield writer, reader
    writer.close()
    reader.close()


@pytest.mark.parametrize(
    ("datatype", "array"),
    [
        ("FP32", np.arange(12, dtype=np.float32).reshape(3, 4)),
        ("INT64", np.array([-1, 2**40], dtype=np.int64)),
        ("BOOL", np.array([[True, False]])),
        ("FP16", np.array([1.5, -2.25], dtype=np.float16)),
        ("UINT8", np.zeros((0, 3), dtype=np.uint8)),
        ("INT32", np.arange(20, dtype=np.int32).reshape(4, 5)[:, ::2]),  # not contiguous
        ("BYTES", np.array([[b"a", b""], [b"\x00\xff", "é".encode()]], dtype=object)),
    ],
)
def test_tensors_cross_the_shared_memory(arena_pair, datatype, array):
    writer, reader = arena_pair
    wire = encode_tensor(writer, "T", datatype, array)
    assert wire[:3] == ("T", datatype, array.shape)
    assert isinstance(wire[3], tuple), "small tensors travel in shared memory, not the message"
    decoded = decode_tensor(reader, wire, copy=True)
    assert decoded.shape == array.shape
    assert decoded.dtype == array.dtype
    assert decoded.tolist() == array.tolist()


def test_views_share_memory_and_copies_do_not(arena_pair):
    writer, reader = arena_pair
    wire = encode_tensor(writer, "T", "INT32", np.array([1, 2, 3], dtype=np.int32))
    view = decode_tensor(reader, wire, copy=False)
    copy = decode_tensor(reader, wire, copy=True)
    writer.view(wire[3], np.dtype(np.int32), (3,))[0] = 99
    assert view.tolist() == [99, 2, 3]
    assert copy.tolist() == [1, 2, 3]


def test_tensors_too_big_for_the_arena_travel_inline(arena_pair):
    writer, reader = arena_pair
    big = np.arange(2000, dtype=np.float64)  # 16000 bytes > 4096
    wire = encode_tensor(writer, "BIG", "FP64", big)
    assert isinstance(wire[3], bytes)
    np.testing.assert_array_equal(decode_tensor(reader, wire, copy=False), big)


def test_arena_allocations_are_aligned_and_reset(arena_pair):
    writer, _ = arena_pair
    first = writer.put(np.ones(3, dtype=np.uint8))
    second = writer.put(np.ones(3, dtype=np.uint8))
    assert first == (0, 3)
    assert second == (64, 3)
    writer.reset()
    assert writer.put(np.ones(1, dtype=np.uint8)) == (0, 1)


def test_bytes_serialization_is_tritons_layout():
    array = np.array([b"ab", "c"], dtype=object)
    assert serialize_bytes(array) == b"\x02\x00\x00\x00ab\x01\x00\x00\x00c"
    assert deserialize_bytes(b"\x02\x00\x00\x00ab\x00\x00\x00\x00").tolist() == [b"ab", b""]


@pytest.mark.parametrize(
    ("array", "expected"),
    [
        (np.zeros(1, dtype=np.float32), "FP32"),
        (np.zeros(1, dtype=np.uint64), "UINT64"),
        (np.array([b"x"], dtype=object), "BYTES"),
        (np.array(["x"]), "BYTES"),
        (np.array([b"x"]), "BYTES"),
    ],
)
def test_datatype_of_numpy_arrays(array, expected):
    assert datatype_of(array) == expected


def test_datatype_of_rejects_types_the_protocol_lacks():
    with pytest.raises(TypeError, match="complex64"):
        datatype_of(np.zeros(1, dtype=np.complex64))


def test_channel_frames_messages_both_ways():
    left, right = socket.socketpair()
    a, b = Channel(left), Channel(right)
    big = ("payload", b"x" * 1_000_000)  # larger than a socket buffer: needs a reader
    reader = threading.Thread(target=lambda: received.append(b.recv()))
    received: list = []
    reader.start()
    a.send(big)
    reader.join(10)
    assert received == [big]
    b.send(("reply", 1))
    assert a.recv() == ("reply", 1)
    b.close()
    with pytest.raises(WorkerDied):
        a.recv()
    a.close()
