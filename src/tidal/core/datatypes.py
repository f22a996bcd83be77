"""Tensor data types of the v2 protocol and their numpy and model-config spellings."""

from __future__ import annotations

import enum

import numpy as np


class DataType(enum.Enum):
    """A v2 protocol data type; the value is the protocol's spelling (``"FP32"``)."""

    BOOL = "BOOL"
    UINT8 = "UINT8"
    UINT16 = "UINT16"
    UINT32 = "UINT32"
    UINT64 = "UINT64"
    INT8 = "INT8"
    INT16 = "INT16"
    INT32 = "INT32"
    INT64 = "INT64"
    FP16 = "FP16"
    BF16 = "BF16"
    FP32 = "FP32"
    FP64 = "FP64"
    BYTES = "BYTES"

    @property
    def numpy_dtype(self) -> np.dtype:
        """The numpy dtype holding this type; BF16 is carried as raw ``uint16`` bits."""
        return _NUMPY[self]

    @property
    def item_size(self) -> int:
        """Bytes per element; 0 for BYTES, whose elements vary in length."""
        return 0 if self is DataType.BYTES else _NUMPY[self].itemsize

    @property
    def config_name(self) -> str:
        """The model configuration's spelling (``"TYPE_FP32"``, ``"TYPE_STRING"``)."""
        return "TYPE_STRING" if self is DataType.BYTES else f"TYPE_{self.value}"

    @classmethod
    def parse(cls, name: str) -> DataType:
        """Read a protocol name; raise ``ValueError`` for an unknown one."""
        try:
            return cls(name)
        except ValueError:
            raise ValueError(f"unknown datatype '{name}'") from None

    @classmethod
    def from_config_name(cls, name: str) -> DataType:
        """Read a model-config name such as ``TYPE_INT32``."""
        if name == "TYPE_STRING":
            return cls.BYTES
        if not name.startswith("TYPE_"):
            raise ValueError(f"unknown data_type '{name}'")
        return cls.parse(name[5:])

    @classmethod
    def from_numpy(cls, dtype: np.dtype) -> DataType:
        """The data type of a numpy dtype (object and string dtypes are BYTES)."""
        dtype = np.dtype(dtype)
        if dtype.kind in "OSU":
            return cls.BYTES
        try:
            return _FROM_NUMPY[dtype]
        except KeyError:
            raise ValueError(f"numpy dtype {dtype} has no v2 datatype") from None


_NUMPY: dict[DataType, np.dtype] = {
    DataType.BOOL: np.dtype(np.bool_),
    DataType.UINT8: np.dtype(np.uint8),
    DataType.UINT16: np.dtype(np.uint16),
    DataType.UINT32: np.dtype(np.uint32),
    DataType.UINT64: np.dtype(np.uint64),
    DataType.INT8: np.dtype(np.int8),
    DataType.INT16: np.dtype(np.int16),
    DataType.INT32: np.dtype(np.int32),
    DataType.INT64: np.dtype(np.int64),
    DataType.FP16: np.dtype(np.float16),
    DataType.BF16: np.dtype(np.uint16),
    DataType.FP32: np.dtype(np.float32),
    DataType.FP64: np.dtype(np.float64),
    DataType.BYTES: np.dtype(object),
}

# BF16 and UINT16 share a storage dtype; numpy uint16 always means UINT16.
_FROM_NUMPY: dict[np.dtype, DataType] = {
    dtype: datatype for datatype, dtype in _NUMPY.items() if datatype is not DataType.BF16
}
