"""Parsing ``tidal config generate --input`` specs."""

import pytest

from tidal.cli.config_cmd import parse_input_spec
from tidal.config import TensorConfig
from tidal.core import DataType


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("INPUT__0:FP32:-1,3,224,224", TensorConfig("INPUT__0", DataType.FP32, (-1, 3, 224, 224))),
        ("FP16:-1,8", TensorConfig("INPUT__2", DataType.FP16, (-1, 8))),
        ("ids:TYPE_INT64:-1, 128", TensorConfig("ids", DataType.INT64, (-1, 128))),
        ("text:string:-1", TensorConfig("text", DataType.BYTES, (-1,))),
        ("raw:BYTES:4", TensorConfig("raw", DataType.BYTES, (4,))),
    ],
)
def test_input_specs(text, expected):
    assert parse_input_spec(text, 2) == expected


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("x", "--input 'x': expected [NAME:]TYPE:DIMS such as INPUT__0:FP32:-1,3"),
        (":FP32:3", "--input ':FP32:3': expected [NAME:]TYPE:DIMS such as INPUT__0:FP32:-1,3"),
        ("x:FP33:3", "--input 'x:FP33:3': unknown type 'FP33' (known: BOOL, UINT8, UINT16, "),
        ("x:FP32:a", "--input 'x:FP32:a': dims must be integers such as -1,3,224,224"),
        ("x:FP32:", "--input 'x:FP32:': dims must be positive or -1, got []"),
        ("x:FP32:0,-2", "--input 'x:FP32:0,-2': dims must be positive or -1, got [0, -2]"),
    ],
)
def test_bad_input_specs(text, message):
    with pytest.raises(ValueError) as info:
        parse_input_spec(text, 0)
    assert str(info.value).startswith(message)
