import numpy as np
import pytest

from tidal.core import DataType

# (data type, numpy dtype, item size, model-config name)
TABLE = [
    (DataType.BOOL, np.bool_, 1, "TYPE_BOOL"),
    (DataType.UINT8, np.uint8, 1, "TYPE_UINT8"),
    (DataType.UINT16, np.uint16, 2, "TYPE_UINT16"),
    (DataType.UINT32, np.uint32, 4, "TYPE_UINT32"),
    (DataType.UINT64, np.uint64, 8, "TYPE_UINT64"),
    (DataType.INT8, np.int8, 1, "TYPE_INT8"),
    (DataType.INT16, np.int16, 2, "TYPE_INT16"),
    (DataType.INT32, np.int32, 4, "TYPE_INT32"),
    (DataType.INT64, np.int64, 8, "TYPE_INT64"),
    (DataType.FP16, np.float16, 2, "TYPE_FP16"),
    (DataType.BF16, np.uint16, 2, "TYPE_BF16"),
    (DataType.FP32, np.float32, 4, "TYPE_FP32"),
    (DataType.FP64, np.float64, 8, "TYPE_FP64"),
    (DataType.BYTES, np.object_, 0, "TYPE_STRING"),
]


def test_table_covers_every_data_type():
    assert [row[0] for row in TABLE] == list(DataType)
    assert len(DataType) == 14


@pytest.mark.parametrize(("datatype", "numpy_type", "size", "config_name"), TABLE)
def test_numpy_dtype_item_size_and_config_name(datatype, numpy_type, size, config_name):
    assert datatype.numpy_dtype == np.dtype(numpy_type)
    assert datatype.item_size == size
    assert datatype.config_name == config_name


@pytest.mark.parametrize(("datatype", "numpy_type", "size", "config_name"), TABLE)
def test_names_read_back(datatype, numpy_type, size, config_name):
    assert DataType.parse(datatype.value) is datatype
    assert DataType.from_config_name(config_name) is datatype


def test_protocol_spelling_is_the_value():
    assert DataType.FP32.value == "FP32"
    assert DataType.BYTES.value == "BYTES"


@pytest.mark.parametrize("name", ["fp32", "FLOAT", "", "TYPE_FP32", "STRING", " FP32"])
def test_parse_rejects_unknown_names(name):
    with pytest.raises(ValueError) as info:
        DataType.parse(name)
    assert str(info.value) == f"unknown datatype '{name}'"


@pytest.mark.parametrize("name", ["FP32", "type_fp32", "", "INVALID"])
def test_from_config_name_needs_the_type_prefix(name):
    with pytest.raises(ValueError) as info:
        DataType.from_config_name(name)
    assert str(info.value) == f"unknown data_type '{name}'"


def test_from_config_name_rejects_unknown_suffix():
    with pytest.raises(ValueError) as info:
        DataType.from_config_name("TYPE_FP8")
    assert str(info.value) == "unknown datatype 'FP8'"


@pytest.mark.parametrize(
    ("datatype", "numpy_type"),
    [(row[0], row[1]) for row in TABLE if row[0] not in (DataType.BF16, DataType.BYTES)],
)
def test_from_numpy_for_fixed_size_types(datatype, numpy_type):
    assert DataType.from_numpy(np.dtype(numpy_type)) is datatype
    assert DataType.from_numpy(numpy_type) is datatype


def test_from_numpy_uint16_means_uint16_not_bf16():
    assert DataType.from_numpy(np.uint16) is DataType.UINT16


@pytest.mark.parametrize("dtype", [np.object_, "S5", "U3", np.bytes_, np.str_])
def test_from_numpy_object_and_string_dtypes_are_bytes(dtype):
    assert DataType.from_numpy(np.dtype(dtype)) is DataType.BYTES


@pytest.mark.parametrize("dtype", [np.complex64, "datetime64[s]", np.void])
def test_from_numpy_rejects_dtypes_without_a_v2_type(dtype):
    with pytest.raises(ValueError) as info:
        DataType.from_numpy(dtype)
    assert str(info.value) == f"numpy dtype {np.dtype(dtype)} has no v2 datatype"
