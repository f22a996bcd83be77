import warnings

import orjson
import pytest

from tidal.config import ModelConfig, TensorConfig, parse_config_text
from tidal.config.validation import normalize_config
from tidal.core import DataType
from tidal.core.metadata import ModelMetadata, ServerMetadata, TensorMetadata
from tidal.protocol.json_views import (
    model_config_json,
    model_metadata_json,
    server_metadata_json,
    statistics_json,
)
from tidal.scheduling.statistics import OTHER, ModelStatistics, Phases

CONFIG_TEXT = """
name: "m"
max_batch_size: 4
version_policy { specific { versions: [ 1, 3 ] } }
input [{ name: "x" data_type: TYPE_FP32 dims: [ -1, 4 ] reshape { shape: [ 2, -1, 2 ] } }]
output [{ name: "y" data_type: TYPE_STRING dims: [ 4 ] label_filename: "labels.txt" }]
instance_group [{ count: 2 kind: KIND_CPU }]
dynamic_batching {
  preferred_batch_size: [ 2, 4 ]
  max_queue_delay_microseconds: 100
  default_queue_policy { default_timeout_microseconds: 5 }
  priority_queue_policy { key: 2 value { default_timeout_microseconds: 7 max_queue_size: 3 } }
}
model_warmup [{ name: "w" batch_size: 1 inputs { key: "x" value: {
  data_type: TYPE_FP32 dims: [ 3, 4 ] zero_data: true } } }]
parameters { key: "k" value { string_value: "v" } }
"""


@pytest.fixture(scope="module")
def config_json():
    return model_config_json(parse_config_text(CONFIG_TEXT, model_name="m"))


def _assert_ints(values):
    assert all(type(v) is int for v in values), values


def test_dims_are_ints_not_strings(config_json):
    (x,) = config_json["input"]
    assert x["dims"] == [-1, 4]
    _assert_ints(x["dims"])
    assert x["reshape"] == {"shape": [2, -1, 2]}
    _assert_ints(x["reshape"]["shape"])
    (y,) = config_json["output"]
    assert y["dims"] == [4]
    _assert_ints(y["dims"])


def test_nested_64_bit_fields_are_ints(config_json):
    assert config_json["version_policy"] == {"specific": {"versions": [1, 3]}}
    _assert_ints(config_json["version_policy"]["specific"]["versions"])
    batching = config_json["dynamic_batching"]
    assert batching["max_queue_delay_microseconds"] == 100
    assert type(batching["max_queue_delay_microseconds"]) is int
    assert batching["preferred_batch_size"] == [2, 4]
    assert batching["default_queue_policy"]["default_timeout_microseconds"] == 5
    assert type(batching["default_queue_policy"]["default_timeout_microseconds"]) is int


def test_map_of_messages_keeps_string_keys_and_int_values(config_json):
    policy = config_json["dynamic_batching"]["priority_queue_policy"]
    assert list(policy) == ["2"]
    assert policy["2"]["default_timeout_microseconds"] == 7
    assert type(policy["2"]["default_timeout_microseconds"]) is int
    assert policy["2"]["max_queue_size"] == 3
    warmup_input = config_json["model_warmup"][0]["inputs"]["x"]
    assert warmup_input["dims"] == [3, 4]
    _assert_ints(warmup_input["dims"])


def test_every_field_is_shown_with_protobuf_names(config_json):
    assert config_json["name"] == "m"
    assert config_json["platform"] == ""
    assert config_json["backend"] == ""
    assert config_json["max_batch_size"] == 4
    assert config_json["batch_input"] == []
    (x,) = config_json["input"]
    assert x["data_type"] == "TYPE_FP32"
    assert x["format"] == "FORMAT_NONE"
    assert x["optional"] is False
    (y,) = config_json["output"]
    assert y["data_type"] == "TYPE_STRING"
    assert y["label_filename"] == "labels.txt"
    assert config_json["instance_group"][0]["kind"] == "KIND_CPU"
    assert config_json["instance_group"][0]["count"] == 2
    assert config_json["parameters"] == {"k": {"string_value": "v"}}


def test_config_json_serializes_with_numbers(config_json):
    text = orjson.dumps(config_json)
    assert b'"dims":[-1,4]' in text
    assert b'"max_queue_delay_microseconds":100' in text
    assert b'"versions":[1,3]' in text


def test_effective_config_shows_the_normalized_group():
    config = normalize_config(
        ModelConfig(
            name="m",
            inputs=(TensorConfig("x", DataType.INT64, (2,)),),
            outputs=(TensorConfig("y", DataType.INT64, (2,)),),
        )
    )
    view = model_config_json(config)
    assert [(g["name"], g["count"], g["kind"]) for g in view["instance_group"]] == [
        ("m_0", 1, "KIND_CPU")
    ]
    assert view["version_policy"] == {"latest": {"num_versions": 1}}
    assert view["input"][0]["dims"] == [2]
    _assert_ints(view["input"][0]["dims"])


def test_config_view_emits_no_deprecation_warning():
    config = parse_config_text(CONFIG_TEXT, model_name="m")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model_config_json(config)
    assert [str(w.message) for w in caught] == []


def test_server_metadata_json():
    metadata = ServerMetadata("tidal", "1.2.3", ("classification", "binary_tensor_data"))
    assert server_metadata_json(metadata) == {
        "name": "tidal",
        "version": "1.2.3",
        "extensions": ["classification", "binary_tensor_data"],
    }


def test_model_metadata_json():
    metadata = ModelMetadata(
        name="m",
        versions=("1", "3"),
        platform="onnxruntime_onnx",
        inputs=(TensorMetadata("x", "FP32", (-1, 4)),),
        outputs=(TensorMetadata("y", "BYTES", (-1,)), TensorMetadata("z", "INT8", ())),
    )
    assert model_metadata_json(metadata) == {
        "name": "m",
        "versions": ["1", "3"],
        "platform": "onnxruntime_onnx",
        "inputs": [{"name": "x", "datatype": "FP32", "shape": [-1, 4]}],
        "outputs": [
            {"name": "y", "datatype": "BYTES", "shape": [-1]},
            {"name": "z", "datatype": "INT8", "shape": []},
        ],
    }


def test_statistics_json():
    stats = ModelStatistics()
    stats.record_execution(4, Phases(40, 1000, 20))  # one execution holding 4 samples
    stats.record_execution(1, Phases(7, 500, 3))
    stats.record_success(300, 20, Phases(10, 250, 5))  # total, queue, compute infer, input, output
    stats.record_success(400, 30, Phases(7, 500, 3))
    stats.record_failure(OTHER, 50)
    (entry,) = statistics_json([("m", 3, stats)])["model_stats"]
    last = entry.pop("last_inference")
    assert type(last) is int
    assert last > 1_600_000_000_000  # milliseconds since the epoch
    zero = {"count": 0, "ns": 0}
    assert entry == {
        "name": "m",
        "version": "3",
        "inference_count": 5,
        "execution_count": 2,
        "inference_stats": {
            "success": {"count": 2, "ns": 700},
            "fail": {"count": 1, "ns": 50},
            "queue": {"count": 2, "ns": 50},
            "compute_input": {"count": 2, "ns": 17},
            "compute_infer": {"count": 2, "ns": 750},
            "compute_output": {"count": 2, "ns": 8},
            "cache_hit": zero,
            "cache_miss": zero,
        },
        "response_stats": {},
        "batch_stats": [
            {
                "batch_size": 1,
                "compute_input": {"count": 1, "ns": 7},
                "compute_infer": {"count": 1, "ns": 500},
                "compute_output": {"count": 1, "ns": 3},
            },
            {
                "batch_size": 4,
                "compute_input": {"count": 1, "ns": 40},
                "compute_infer": {"count": 1, "ns": 1000},
                "compute_output": {"count": 1, "ns": 20},
            },
        ],
        "memory_usage": [],
    }


def test_statistics_json_without_models():
    assert statistics_json([]) == {"model_stats": []}
    (entry,) = statistics_json([("m", 1, ModelStatistics())])["model_stats"]
    assert (entry["last_inference"], entry["batch_stats"]) == (0, [])
