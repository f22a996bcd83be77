from dataclasses import replace

import pytest

from tidal.config import (
    ConfigError,
    DynamicBatching,
    InstanceGroup,
    ModelConfig,
    TensorConfig,
    VersionPolicy,
    parse_config_text,
)
from tidal.config.validation import normalize_config, validate_config
from tidal.core import DataType

X = TensorConfig("x", DataType.FP32, (4,))
Y = TensorConfig("y", DataType.FP32, (4,))
VALID = ModelConfig(name="m", max_batch_size=8, inputs=(X,), outputs=(Y,))


# -- normalize_config -------------------------------------------------------------------------


def test_normalize_adds_one_cpu_group_named_after_the_model():
    assert normalize_config(VALID).instance_groups == (
        InstanceGroup(name="m_0", count=1, kind="KIND_CPU", gpus=()),
    )


def test_normalize_names_unnamed_groups_by_index_and_keeps_given_names():
    config = replace(
        VALID,
        instance_groups=(
            InstanceGroup(name="", count=2, kind="KIND_GPU", gpus=(0,)),
            InstanceGroup(name="mine", count=1, kind="KIND_CPU"),
            InstanceGroup(name="", count=3, kind="KIND_AUTO"),
        ),
    )
    assert normalize_config(config).instance_groups == (
        InstanceGroup(name="m_0", count=2, kind="KIND_GPU", gpus=(0,)),
        InstanceGroup(name="mine", count=1, kind="KIND_CPU"),
        InstanceGroup(name="m_2", count=3, kind="KIND_CPU"),
    )


def test_normalize_changes_nothing_else():
    normalized = normalize_config(VALID)
    assert replace(normalized, instance_groups=()) == VALID


def test_normalize_is_idempotent():
    once = normalize_config(VALID)
    assert normalize_config(once) == once


def test_instance_group_without_count_is_accepted():
    text = """
    name: "m"
    input [{ name: "x" data_type: TYPE_FP32 dims: [4] }]
    output [{ name: "y" data_type: TYPE_FP32 dims: [4] }]
    instance_group [{ kind: KIND_CPU }]
    """
    config = normalize_config(parse_config_text(text, model_name="m"))
    validate_config(config)
    assert config.instance_groups[0].count >= 1


# -- validate_config: accepted ------------------------------------------------------------------


def test_valid_config_passes():
    assert validate_config(normalize_config(VALID)) is None


@pytest.mark.parametrize(
    "tensor",
    [
        TensorConfig("x", DataType.FP32, (-1, 3)),
        TensorConfig("x", DataType.FP32, (), reshape=()),
        TensorConfig("x", DataType.FP32, (4,), reshape=(2, 2)),
        TensorConfig("x", DataType.FP32, (-1,), reshape=(2, 3)),
        TensorConfig("x", DataType.BYTES, (1,), reshape=()),
    ],
)
def test_accepted_tensor_shapes(tensor):
    validate_config(replace(VALID, inputs=(tensor,)))


def test_unbatched_model_passes():
    validate_config(replace(VALID, max_batch_size=0))


def test_priority_level_within_range_passes():
    batching = DynamicBatching(priority_levels=3, default_priority_level=3)
    validate_config(replace(VALID, dynamic_batching=batching))


def test_preferred_batch_size_equal_to_max_passes():
    validate_config(replace(VALID, dynamic_batching=DynamicBatching(preferred_batch_size=(1, 8))))


# -- validate_config: rejected ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("config", "message"),
    [
        (replace(VALID, max_batch_size=-1), "model 'm': max_batch_size must be >= 0, got -1"),
        (replace(VALID, inputs=()), "model 'm': the configuration has no inputs"),
        (replace(VALID, outputs=()), "model 'm': the configuration has no outputs"),
        (
            replace(VALID, inputs=(X, TensorConfig("b", DataType.FP32, (1,)), X)),
            "model 'm': duplicate input name(s) ['x']",
        ),
        (replace(VALID, outputs=(Y, Y)), "model 'm': duplicate output name(s) ['y']"),
        (
            replace(VALID, inputs=(TensorConfig("", DataType.FP32, (1,)),)),
            "model 'm': an input has no name",
        ),
        (
            replace(VALID, outputs=(TensorConfig("y", None, (1,)),)),
            "model 'm': output 'y': data_type is not set",
        ),
        (
            replace(VALID, inputs=(TensorConfig("x", DataType.FP32, ()),)),
            "model 'm': input 'x': dims are not set",
        ),
        (
            replace(VALID, inputs=(TensorConfig("x", DataType.FP32, (2, 0)),)),
            "model 'm': input 'x': dims [2, 0] must be positive or -1",
        ),
        (
            replace(VALID, inputs=(TensorConfig("x", DataType.FP32, (-2,)),)),
            "model 'm': input 'x': dims [-2] must be positive or -1",
        ),
        (
            replace(VALID, outputs=(TensorConfig("y", DataType.FP32, (4,), reshape=(3,)),)),
            "model 'm': output 'y': reshape [3] has a different element count than dims [4]",
        ),
        (
            replace(VALID, instance_groups=(InstanceGroup(name="g", count=0),)),
            "model 'm': instance_group 'g' count must be >= 1, got 0",
        ),
        (
            replace(VALID, instance_groups=(InstanceGroup(name="g", kind="KIND_TPU"),)),
            "model 'm': instance_group 'g' has unknown kind",
        ),
        (
            replace(VALID, version_policy=VersionPolicy(num_versions=0)),
            "model 'm': version_policy latest num_versions must be >= 1",
        ),
        (
            replace(VALID, dynamic_batching=DynamicBatching(preferred_batch_size=(0,))),
            "model 'm': dynamic_batching preferred_batch_size 0 must be between 1 and "
            "max_batch_size 8",
        ),
        (
            replace(VALID, dynamic_batching=DynamicBatching(preferred_batch_size=(4, 9))),
            "model 'm': dynamic_batching preferred_batch_size 9 must be between 1 and "
            "max_batch_size 8",
        ),
        (
            replace(VALID, dynamic_batching=DynamicBatching(priority_levels=2)),
            "model 'm': dynamic_batching default_priority_level must be between 1 and "
            "priority_levels 2",
        ),
        (
            replace(
                VALID,
                dynamic_batching=DynamicBatching(priority_levels=2, default_priority_level=3),
            ),
            "model 'm': dynamic_batching default_priority_level must be between 1 and "
            "priority_levels 2",
        ),
    ],
)
def test_rejected_configs(config, message):
    with pytest.raises(ConfigError) as info:
        validate_config(config)
    assert str(info.value) == message


def test_all_kinds_of_instance_group_are_known():
    for kind in ("KIND_AUTO", "KIND_CPU", "KIND_GPU", "KIND_MODEL"):
        validate_config(replace(VALID, instance_groups=(InstanceGroup(name="g", kind=kind),)))


def test_other_version_policies_need_no_count():
    validate_config(replace(VALID, version_policy=VersionPolicy(kind="all", num_versions=0)))
    validate_config(
        replace(VALID, version_policy=VersionPolicy(kind="specific", num_versions=0, versions=(1,)))
    )


# -- scheduling tidal does not run ------------------------------------------------------------


def test_sequence_batching_is_a_load_error_that_names_the_field():
    config = parse_config_text(
        'name: "acc"\nmax_batch_size: 8\n'
        'input [{ name: "x" data_type: TYPE_FP32 dims: [1] }]\n'
        'output [{ name: "y" data_type: TYPE_FP32 dims: [1] }]\n'
        "sequence_batching { max_sequence_idle_microseconds: 5000000 direct {} }\n",
        model_name="acc",
    )
    with pytest.raises(ConfigError, match=r"model 'acc': sequence_batching is not supported"):
        validate_config(config)


def test_dynamic_batching_config_from_text_still_validates():
    config = parse_config_text(
        'name: "m"\nmax_batch_size: 8\n'
        'input [{ name: "x" data_type: TYPE_FP32 dims: [1] }]\n'
        'output [{ name: "y" data_type: TYPE_FP32 dims: [1] }]\n'
        "dynamic_batching {}\n",
        model_name="m",
    )
    validate_config(config)
