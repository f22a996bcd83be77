import numpy as np
import pytest

from tidal.core import DataType, ErrorCode, InferenceError
from tidal.protocol.tensor_bytes import (
    element_count,
    serialize_bytes,
    tensor_from_bytes,
    tensor_to_bytes,
)

FIXED = [t for t in DataType if t is not DataType.BYTES]


@pytest.mark.parametrize(("shape", "count"), [((), 1), ((5,), 5), ((2, 3), 6), ((4, 0, 2), 0)])
def test_element_count(shape, count):
    assert element_count(shape) == count


@pytest.mark.parametrize("datatype", FIXED)
def test_fixed_size_round_trip(datatype):
    values = np.arange(6).reshape(2, 3) % 2 if datatype is DataType.BOOL else np.arange(6)
    array = values.astype(datatype.numpy_dtype).reshape(2, 3)
    raw = tensor_to_bytes(datatype, array)
    assert len(raw) == 6 * datatype.item_size
    back = tensor_from_bytes("x", datatype, (2, 3), raw)
    assert back.dtype == datatype.numpy_dtype
    assert back.shape == (2, 3)
    np.testing.assert_array_equal(back, array)


def test_exact_little_endian_layout():
    raw = tensor_to_bytes(DataType.INT32, np.array([1, -2], np.int32))
    assert raw == b"\x01\x00\x00\x00\xfe\xff\xff\xff"
    assert tensor_to_bytes(DataType.FP32, np.array([1.0], np.float32)) == b"\x00\x00\x80\x3f"
    assert tensor_to_bytes(DataType.BOOL, np.array([True, False])) == b"\x01\x00"


def test_big_endian_arrays_are_written_little_endian():
    array = np.array([1, 258], dtype=">u2")
    assert tensor_to_bytes(DataType.UINT16, array) == b"\x01\x00\x02\x01"


def test_non_contiguous_arrays_are_written_in_logical_order():
    array = np.arange(6, dtype=np.int8).reshape(2, 3).T  # [[0, 3], [1, 4], [2, 5]]
    assert tensor_to_bytes(DataType.INT8, array) == bytes([0, 3, 1, 4, 2, 5])
    assert tensor_to_bytes(DataType.INT8, np.arange(6, dtype=np.int8)[::2]) == bytes([0, 2, 4])


def test_bf16_is_carried_as_uint16_bits():
    bits = np.array([0x3F80, 0xC000], np.uint16)  # 1.0 and -2.0 in bfloat16
    raw = tensor_to_bytes(DataType.BF16, bits)
    assert raw == b"\x80\x3f\x00\xc0"
    back = tensor_from_bytes("x", DataType.BF16, (2,), raw)
    assert back.dtype == np.uint16
    assert back.tolist() == [0x3F80, 0xC000]


def test_fixed_size_data_is_not_copied():
    buffer = bytearray(8)
    array = tensor_from_bytes("x", DataType.INT32, (2,), memoryview(buffer))
    buffer[0] = 7
    assert array.tolist() == [7, 0]


def test_fixed_size_data_from_bytes_is_read_only():
    array = tensor_from_bytes("x", DataType.INT16, (1,), b"\x05\x00")
    assert array.tolist() == [5]
    assert not array.flags.writeable


@pytest.mark.parametrize(
    ("datatype", "shape", "raw", "message"),
    [
        (
            DataType.INT32,
            (2,),
            b"\x00" * 7,
            "input 'x': got 7 bytes of tensor data, but shape [2] of INT32 needs 8",
        ),
        (
            DataType.FP64,
            (1, 2),
            b"\x00" * 24,
            "input 'x': got 24 bytes of tensor data, but shape [1, 2] of FP64 needs 16",
        ),
        (
            DataType.UINT8,
            (0,),
            b"\x00",
            "input 'x': got 1 bytes of tensor data, but shape [0] of UINT8 needs 0",
        ),
    ],
)
def test_wrong_size_is_invalid(datatype, shape, raw, message):
    with pytest.raises(InferenceError) as info:
        tensor_from_bytes("x", datatype, shape, raw)
    assert info.value.code is ErrorCode.INVALID_ARG
    assert info.value.message == message


def test_empty_fixed_size_tensor():
    array = tensor_from_bytes("x", DataType.FP32, (0, 3), b"")
    assert array.shape == (0, 3)
    assert tensor_to_bytes(DataType.FP32, array) == b""


# -- BYTES ------------------------------------------------------------------------------------


def test_bytes_are_length_prefixed():
    array = np.array([b"ab", b"", "\u00e9"], dtype=object)
    expected = b"\x02\x00\x00\x00ab" + b"\x00\x00\x00\x00" + b"\x02\x00\x00\x00\xc3\xa9"
    assert serialize_bytes(array) == expected
    assert tensor_to_bytes(DataType.BYTES, array) == expected


def test_bytes_round_trip_with_shape():
    array = np.array([[b"a", b"bc"], [b"\x00\xff", b""]], dtype=object)
    raw = tensor_to_bytes(DataType.BYTES, array)
    back = tensor_from_bytes("x", DataType.BYTES, (2, 2), raw)
    assert back.dtype == object
    assert back.shape == (2, 2)
    assert back.tolist() == [[b"a", b"bc"], [b"\x00\xff", b""]]
    assert all(type(item) is bytes for item in back.ravel())


def test_bytes_elements_are_copied_out_of_the_buffer():
    buffer = bytearray(b"\x01\x00\x00\x00a")
    back = tensor_from_bytes("x", DataType.BYTES, (1,), memoryview(buffer))
    buffer[4] = ord("b")
    assert back[0] == b"a"


def test_empty_bytes_tensor():
    back = tensor_from_bytes("x", DataType.BYTES, (0,), b"")
    assert back.shape == (0,)
    assert serialize_bytes(np.empty(0, dtype=object)) == b""


def test_non_bytes_elements_are_written_as_their_text():
    assert serialize_bytes(np.array([7], dtype=object)) == b"\x01\x00\x00\x007"


@pytest.mark.parametrize(
    ("raw", "shape", "message"),
    [
        (b"\x01\x00", (1,), "input 'x': truncated BYTES element length"),
        (b"\x01\x00\x00\x00a\x01", (2,), "input 'x': truncated BYTES element length"),
        (
            b"\x05\x00\x00\x00abc",
            (1,),
            "input 'x': BYTES element of 5 bytes runs past the tensor data",
        ),
        (
            b"\x01\x00\x00\x00a\x01\x00\x00\x00b",
            (3,),
            "input 'x': got 2 BYTES elements, but the shape needs 3",
        ),
        (
            b"\x01\x00\x00\x00a\x01\x00\x00\x00b",
            (1,),
            "input 'x': got 2 BYTES elements, but the shape needs 1",
        ),
    ],
)
def test_malformed_bytes_are_invalid(raw, shape, message):
    with pytest.raises(InferenceError) as info:
        tensor_from_bytes("x", DataType.BYTES, shape, raw)
    assert info.value.code is ErrorCode.INVALID_ARG
    assert info.value.message == message
