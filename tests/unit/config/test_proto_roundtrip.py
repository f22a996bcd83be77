from dataclasses import replace

import pytest
from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2 as pb

from tidal.config import (
    DynamicBatching,
    InstanceGroup,
    ModelConfig,
    QueuePolicy,
    TensorConfig,
    VersionPolicy,
)
from tidal.config.proto import from_proto, to_proto
from tidal.core import DataType

from .test_pbtxt import FULL


def _message(text: str) -> pb.ModelConfig:
    message = pb.ModelConfig()
    text_format.Parse(text, message)
    return message


def test_full_message_survives_a_round_trip():
    message = _message(FULL)
    assert to_proto(from_proto(message)) == message


def test_frozen_config_survives_a_round_trip():
    config = from_proto(_message(FULL))
    again = from_proto(to_proto(config))
    assert again == config
    assert again.source == config.source


def test_config_built_in_python_converts_to_proto():
    config = ModelConfig(
        name="m",
        backend="onnxruntime",
        max_batch_size=4,
        inputs=(TensorConfig("x", DataType.BYTES, (-1,), reshape=(1, -1), optional=True),),
        outputs=(TensorConfig("y", DataType.BF16, (2, 2), label_filename="l.txt"),),
        instance_groups=(InstanceGroup(name="g", count=3, kind="KIND_GPU", gpus=(1,)),),
        dynamic_batching=DynamicBatching(
            preferred_batch_size=(4,),
            default_queue_policy=QueuePolicy(timeout_action="DELAY"),
        ),
        parameters={"k": "v"},
    )
    message = to_proto(config)
    assert message.name == "m"
    assert message.backend == "onnxruntime"
    assert message.platform == ""
    assert message.max_batch_size == 4
    (x,) = message.input
    assert (x.name, x.data_type, list(x.dims)) == ("x", pb.TYPE_STRING, [-1])
    assert list(x.reshape.shape) == [1, -1]
    assert x.optional is True
    assert x.format == pb.ModelInput.FORMAT_NONE
    (y,) = message.output
    assert (y.name, y.data_type, list(y.dims), y.label_filename) == (
        "y",
        pb.TYPE_BF16,
        [2, 2],
        "l.txt",
    )
    assert not y.HasField("reshape")
    (group,) = message.instance_group
    assert (group.name, group.count, group.kind, list(group.gpus)) == (
        "g",
        3,
        pb.ModelInstanceGroup.KIND_GPU,
        [1],
    )
    assert list(message.dynamic_batching.preferred_batch_size) == [4]
    assert message.dynamic_batching.default_queue_policy.timeout_action == pb.ModelQueuePolicy.DELAY
    assert message.parameters["k"].string_value == "v"
    assert from_proto(message) == replace(
        config, source=message.SerializeToString(deterministic=True)
    )


def test_unset_data_type_converts_to_type_invalid():
    config = ModelConfig(name="m", inputs=(TensorConfig("x", None, (1,)),))
    assert to_proto(config).input[0].data_type == pb.TYPE_INVALID
    assert from_proto(to_proto(config)).inputs[0].data_type is None


@pytest.mark.parametrize(
    ("policy", "which", "check"),
    [
        (VersionPolicy(), "latest", lambda m: m.latest.num_versions == 1),
        (VersionPolicy(num_versions=3), "latest", lambda m: m.latest.num_versions == 3),
        (VersionPolicy(kind="all"), "all", lambda m: True),
        (
            VersionPolicy(kind="specific", versions=(2, 5)),
            "specific",
            lambda m: list(m.specific.versions) == [2, 5],
        ),
    ],
)
def test_version_policy_to_proto(policy, which, check):
    message = to_proto(ModelConfig(name="m", version_policy=policy)).version_policy
    assert message.WhichOneof("policy_choice") == which
    assert check(message)
    assert from_proto(to_proto(ModelConfig(name="m", version_policy=policy))).version_policy == (
        policy
    )


def test_version_policy_change_replaces_the_source_policy():
    config = from_proto(_message(FULL))  # source has specific: [1, 3]
    message = to_proto(replace(config, version_policy=VersionPolicy(kind="all")))
    assert message.version_policy.WhichOneof("policy_choice") == "all"
    assert not message.version_policy.HasField("specific")


def test_fields_tidal_does_not_model_pass_through():
    text = (
        FULL
        + """
response_cache { enable: true }
model_warmup [{ name: "w" batch_size: 1 inputs { key: "INPUT0" value: {
  data_type: TYPE_FP32 dims: [3, 4, 4] zero_data: true } } }]
optimization { input_pinned_memory { enable: true } }
"""
    )
    config = from_proto(_message(text))
    message = to_proto(replace(config, max_batch_size=2))
    assert message.max_batch_size == 2
    assert message.response_cache.enable is True
    assert message.model_warmup[0].name == "w"
    assert list(message.model_warmup[0].inputs["INPUT0"].dims) == [3, 4, 4]
    assert message.optimization.input_pinned_memory.enable is True


def test_replaced_tensors_drop_the_source_tensors():
    config = from_proto(_message(FULL))
    new_inputs = (TensorConfig("only", DataType.INT8, (2,)),)
    message = to_proto(replace(config, inputs=new_inputs, outputs=()))
    assert [t.name for t in message.input] == ["only"]
    assert len(message.output) == 0


def test_removed_dynamic_batching_is_cleared():
    config = from_proto(_message(FULL))
    message = to_proto(replace(config, dynamic_batching=None))
    assert not message.HasField("dynamic_batching")


def test_removed_parameters_and_groups_are_cleared():
    config = from_proto(_message(FULL))
    message = to_proto(replace(config, parameters={}, instance_groups=()))
    assert dict(message.parameters) == {}
    assert len(message.instance_group) == 0


def test_to_proto_does_not_change_the_config():
    config = from_proto(_message(FULL))
    before = config.source
    to_proto(replace(config, name="renamed"))
    assert config.source == before
    assert config.name == "full"
