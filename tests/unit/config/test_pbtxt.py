import dataclasses

import pytest
from tritonclient.grpc import model_config_pb2 as pb

from tidal.config import (
    ConfigError,
    DynamicBatching,
    InstanceGroup,
    ModelConfig,
    QueuePolicy,
    TensorConfig,
    VersionPolicy,
    parse_config_text,
    read_model_config,
)
from tidal.core import DataType

FULL = """
name: "full"
platform: "onnxruntime_onnx"
backend: "onnxruntime"
max_batch_size: 8
default_model_filename: "net.onnx"
version_policy: { specific: { versions: [1, 3] } }
input [
  {
    name: "INPUT0"
    data_type: TYPE_FP32
    format: FORMAT_NCHW
    dims: [ 3, -1, -1 ]
    optional: true
    allow_ragged_batch: true
  },
  {
    name: "TEXT"
    data_type: TYPE_STRING
    dims: [ 1 ]
    reshape: { shape: [ ] }
  }
]
output [
  {
    name: "OUTPUT0"
    data_type: TYPE_INT64
    dims: [ 10 ]
    label_filename: "labels.txt"
  }
]
instance_group [
  { name: "g0" count: 2 kind: KIND_CPU },
  { count: 1 kind: KIND_GPU gpus: [ 0, 1 ] }
]
dynamic_batching {
  preferred_batch_size: [ 2, 4 ]
  max_queue_delay_microseconds: 100
  preserve_ordering: true
  priority_levels: 2
  default_priority_level: 1
  default_queue_policy: { timeout_action: DELAY default_timeout_microseconds: 50
                          allow_timeout_override: true max_queue_size: 7 }
  priority_queue_policy: { key: 2 value: { max_queue_size: 3 } }
}
parameters: { key: "intra_op_thread_count" value: { string_value: "2" } }
"""


def test_full_config_is_read_field_by_field():
    config = parse_config_text(FULL, model_name="full")
    assert config.name == "full"
    assert config.platform == "onnxruntime_onnx"
    assert config.backend == "onnxruntime"
    assert config.max_batch_size == 8
    assert config.default_model_filename == "net.onnx"
    assert config.version_policy == VersionPolicy(kind="specific", num_versions=1, versions=(1, 3))
    assert config.inputs == (
        TensorConfig(
            name="INPUT0",
            data_type=DataType.FP32,
            dims=(3, -1, -1),
            format="FORMAT_NCHW",
            optional=True,
            allow_ragged_batch=True,
        ),
        TensorConfig(name="TEXT", data_type=DataType.BYTES, dims=(1,), reshape=()),
    )
    assert config.outputs == (
        TensorConfig(
            name="OUTPUT0", data_type=DataType.INT64, dims=(10,), label_filename="labels.txt"
        ),
    )
    assert config.instance_groups == (
        InstanceGroup(name="g0", count=2, kind="KIND_CPU", gpus=()),
        InstanceGroup(name="", count=1, kind="KIND_GPU", gpus=(0, 1)),
    )
    assert config.dynamic_batching == DynamicBatching(
        preferred_batch_size=(2, 4),
        max_queue_delay_microseconds=100,
        preserve_ordering=True,
        priority_levels=2,
        default_priority_level=1,
        default_queue_policy=QueuePolicy(
            timeout_action="DELAY",
            default_timeout_microseconds=50,
            allow_timeout_override=True,
            max_queue_size=7,
        ),
        priority_queue_policy={2: QueuePolicy(max_queue_size=3)},
    )
    assert config.parameters == {"intra_op_thread_count": "2"}


def test_dims_are_plain_int_tuples():
    config = parse_config_text(FULL, model_name="full")
    assert type(config.inputs[0].dims) is tuple
    assert all(type(d) is int for d in config.inputs[0].dims)


def test_source_holds_the_serialized_message():
    config = parse_config_text(FULL, model_name="full")
    message = pb.ModelConfig.FromString(config.source)
    assert message.name == "full"
    assert list(message.dynamic_batching.preferred_batch_size) == [2, 4]
    assert message.parameters["intra_op_thread_count"].string_value == "2"


def test_empty_text_gives_defaults():
    config = parse_config_text("", model_name="m")
    assert config.name == ""
    assert config.platform == ""
    assert config.backend == ""
    assert config.max_batch_size == 0
    assert config.version_policy == VersionPolicy()
    assert config.inputs == ()
    assert config.outputs == ()
    assert config.instance_groups == ()
    assert config.dynamic_batching is None
    assert config.parameters == {}


def test_empty_dynamic_batching_block_is_present():
    config = parse_config_text("dynamic_batching { }", model_name="m")
    assert config.dynamic_batching == DynamicBatching()


def test_missing_data_type_is_left_unset():
    config = parse_config_text('input [{ name: "x" dims: [2] }]', model_name="m")
    assert config.inputs[0].data_type is None


def test_output_fields_that_only_inputs_have_get_defaults():
    config = parse_config_text(
        'output [{ name: "y" data_type: TYPE_BOOL dims: [1] }]', model_name="m"
    )
    (output,) = config.outputs
    assert (output.optional, output.format, output.allow_ragged_batch) == (
        False,
        "FORMAT_NONE",
        False,
    )


def test_syntax_error_names_model_and_origin():
    with pytest.raises(ConfigError) as info:
        parse_config_text("max_batch_size: [", model_name="m", origin="/repo/m/config.pbtxt")
    message = str(info.value)
    assert message.startswith("model 'm': /repo/m/config.pbtxt: ")


def test_unknown_field_is_a_config_error():
    with pytest.raises(ConfigError) as info:
        parse_config_text("max_batch: 4", model_name="m")
    assert str(info.value).startswith("model 'm': config.pbtxt: ")
    assert "max_batch" in str(info.value)


def test_config_error_is_a_value_error():
    assert issubclass(ConfigError, ValueError)


def test_read_model_config_without_file_returns_the_folder_name(tmp_path):
    model_dir = tmp_path / "resnet"
    model_dir.mkdir()
    assert read_model_config(model_dir) == ModelConfig(name="resnet")


def test_read_model_config_reads_the_file(tmp_path):
    model_dir = tmp_path / "m"
    model_dir.mkdir()
    (model_dir / "config.pbtxt").write_text('name: "m"\nmax_batch_size: 2\n')
    config = read_model_config(model_dir)
    assert (config.name, config.max_batch_size) == ("m", 2)


def test_read_model_config_keeps_an_empty_name(tmp_path):
    model_dir = tmp_path / "m"
    model_dir.mkdir()
    (model_dir / "config.pbtxt").write_text("max_batch_size: 2\n")
    assert read_model_config(model_dir).name == ""


def test_read_model_config_rejects_a_name_that_differs_from_the_folder(tmp_path):
    model_dir = tmp_path / "m"
    model_dir.mkdir()
    path = model_dir / "config.pbtxt"
    path.write_text('name: "other"\n')
    with pytest.raises(ConfigError) as info:
        read_model_config(model_dir)
    assert str(info.value) == (
        "model 'm': m/config.pbtxt: name 'other' does not match the model directory 'm'"
    )


def test_read_model_config_names_the_file_from_the_repository(tmp_path):
    model_dir = tmp_path / "m"
    model_dir.mkdir()
    path = model_dir / "config.pbtxt"
    path.write_text("input [ {")
    with pytest.raises(ConfigError) as info:
        read_model_config(model_dir)
    # Clients read these reasons: the file is named from the repository, not the server's disk.
    assert str(info.value).startswith("model 'm': m/config.pbtxt: ")
    assert str(tmp_path) not in str(info.value)


def test_read_model_config_rejects_non_utf8(tmp_path):
    model_dir = tmp_path / "m"
    model_dir.mkdir()
    (model_dir / "config.pbtxt").write_bytes(b'name: "\xff\xfe"\n')
    with pytest.raises(ConfigError) as info:
        read_model_config(model_dir)
    assert str(info.value).startswith("model 'm': cannot read m/config.pbtxt: ")


def test_model_config_lookup_helpers():
    config = parse_config_text(FULL, model_name="full")
    assert config.input("TEXT") is config.inputs[1]
    assert config.output("OUTPUT0") is config.outputs[0]
    assert config.input("OUTPUT0") is None
    assert config.output("nope") is None


@pytest.mark.parametrize(("max_batch_size", "batching"), [(0, False), (1, True), (16, True)])
def test_batching_follows_max_batch_size(max_batch_size, batching):
    assert ModelConfig(name="m", max_batch_size=max_batch_size).batching is batching


def test_instance_count_sums_groups_and_defaults_to_one():
    assert ModelConfig(name="m").instance_count == 1
    groups = (InstanceGroup(name="a", count=2), InstanceGroup(name="b", count=3))
    assert ModelConfig(name="m", instance_groups=groups).instance_count == 5


def test_config_objects_are_frozen():
    config = ModelConfig(name="m")
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.max_batch_size = 3  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        TensorConfig("x", DataType.FP32, (1,)).dims = (2,)  # type: ignore[misc]
