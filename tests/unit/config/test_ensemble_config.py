"""Ensemble configurations: reading ensemble_scheduling, the graph checks, the step checks and
the load order."""

import pytest

from tidal.config import ConfigError, ModelConfig, TensorConfig, parse_config_text
from tidal.config.ensemble import (
    check_ensemble_config,
    check_ensemble_steps,
    ensemble_load_order,
    step_version,
)
from tidal.config.model_config import EnsembleStep, InstanceGroup
from tidal.config.proto import from_proto, to_proto
from tidal.config.validation import normalize_config, validate_config
from tidal.core import DataType, InferenceError

PIPELINE = """
name: "pipe"
platform: "ensemble"
max_batch_size: 8
input [ { name: "IN" data_type: TYPE_FP32 dims: [ 4 ] } ]
output [ { name: "OUT" data_type: TYPE_FP32 dims: [ 4 ] } ]
ensemble_scheduling {
  step [
    {
      model_name: "pre"
      model_version: -1
      input_map { key: "x" value: "IN" }
      output_map { key: "y" value: "mid" }
    },
    {
      model_name: "post"
      model_version: 2
      input_map { key: "x" value: "mid" }
      output_map { key: "y" value: "OUT" }
    }
  ]
}
"""


def pipeline(**changes) -> ModelConfig:
    config = parse_config_text(PIPELINE, model_name="pipe")
    return config if not changes else _replace(config, **changes)


def _replace(config: ModelConfig, **changes) -> ModelConfig:
    from dataclasses import replace

    return replace(config, **changes)


def step(model, inputs, outputs, version=-1) -> EnsembleStep:
    return EnsembleStep(model, version, dict(inputs), dict(outputs))


def fp32(name, dims=(4,)) -> TensorConfig:
    return TensorConfig(name=name, data_type=DataType.FP32, dims=dims)


def model(name, inputs, outputs, max_batch_size=8) -> ModelConfig:
    return ModelConfig(
        name=name,
        platform="onnxruntime_onnx",
        max_batch_size=max_batch_size,
        inputs=tuple(inputs),
        outputs=tuple(outputs),
    )


STEPS = {
    ("pre", None): model("pre", [fp32("x")], [fp32("y")]),
    ("post", 2): model("post", [fp32("x")], [fp32("y")]),
}


def lookup(models=None):
    models = STEPS if models is None else models

    def step_config(name, version):
        try:
            return models[(name, version)]
        except KeyError:
            raise InferenceError.unavailable(f"model '{name}' is not ready") from None

    return step_config


def error_of(config) -> str:
    with pytest.raises(ConfigError) as info:
        check_ensemble_config(config)
    return str(info.value)


# -- reading and writing -----------------------------------------------------------------------


def test_ensemble_scheduling_is_read():
    config = pipeline()
    assert config.is_ensemble
    assert config.ensemble_steps == (
        EnsembleStep("pre", -1, {"x": "IN"}, {"y": "mid"}),
        EnsembleStep("post", 2, {"x": "mid"}, {"y": "OUT"}),
    )


def test_ensemble_scheduling_round_trips_through_the_proto():
    config = pipeline()
    again = from_proto(to_proto(config))
    assert again.ensemble_steps == config.ensemble_steps
    built = _replace(config, source=b"")  # written from the dataclasses alone
    assert from_proto(to_proto(built)).ensemble_steps == config.ensemble_steps


def test_step_version():
    assert step_version(EnsembleStep("m", -1)) is None
    assert step_version(EnsembleStep("m", 0)) is None
    assert step_version(EnsembleStep("m", 3)) == 3


def test_a_valid_ensemble_passes_validation_without_instance_groups():
    config = normalize_config(pipeline())
    assert config.instance_groups == ()
    validate_config(config)


# -- the ensemble's own graph ------------------------------------------------------------------


def test_steps_need_platform_ensemble():
    assert error_of(pipeline(platform="onnxruntime_onnx")) == (
        "model 'pipe': ensemble_scheduling needs platform \"ensemble\", got 'onnxruntime_onnx'"
    )


def test_instance_groups_are_refused():
    groups = (InstanceGroup(name="g", count=1, kind="KIND_CPU"),)
    assert error_of(pipeline(instance_groups=groups)) == (
        "ensemble 'pipe': instance_group must not be set for an ensemble"
    )


def test_no_step():
    assert (
        error_of(pipeline(ensemble_steps=())) == "ensemble 'pipe': ensemble_scheduling has no step"
    )


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        (step("", {"x": "IN"}, {"y": "OUT"}), "ensemble 'pipe': step 0 has no model_name"),
        (step("m", {}, {"y": "OUT"}), "ensemble 'pipe': step 0 (model 'm') has no input_map"),
        (step("m", {"x": "IN"}, {}), "ensemble 'pipe': step 0 (model 'm') has no output_map"),
    ],
)
def test_step_fields_are_required(bad, message):
    assert error_of(pipeline(ensemble_steps=(bad,))) == message


def test_a_tensor_written_twice():
    steps = (step("a", {"x": "IN"}, {"y": "OUT"}), step("b", {"x": "IN"}, {"y": "OUT"}))
    assert error_of(pipeline(ensemble_steps=steps)) == (
        "ensemble 'pipe': ensemble tensor 'OUT' is written by step 0 and step 1; a tensor can "
        "appear in only one output_map"
    )


def test_an_input_written_by_a_step():
    steps = (step("a", {"x": "IN"}, {"y": "OUT", "z": "IN"}),)
    assert error_of(pipeline(ensemble_steps=steps)) == (
        "ensemble 'pipe': ensemble input 'IN' is also written by step 0"
    )


def test_an_unused_input():
    config = pipeline(inputs=(fp32("IN"), fp32("EXTRA")))
    assert error_of(config) == "ensemble 'pipe': ensemble input 'EXTRA' is not used by any step"


def test_an_output_no_step_writes():
    config = pipeline(outputs=(fp32("OUT"), fp32("OTHER")))
    assert error_of(config) == "ensemble 'pipe': ensemble output 'OTHER' is not written by any step"


def test_an_output_behind_a_tensor_nothing_provides():
    steps = (
        step("pre", {"x": "IN"}, {"y": "mid"}),
        step("post", {"x": "mid", "w": "nowhere"}, {"y": "OUT"}),
    )
    assert error_of(pipeline(ensemble_steps=steps)) == (
        "ensemble 'pipe': ensemble output 'OUT' is never written: step 1 (model 'post') reads "
        "ensemble tensor 'nowhere', which is neither an ensemble input nor written by any step"
    )


def test_a_cycle():
    steps = (
        step("pre", {"x": "IN", "loop": "b"}, {"y": "a"}),
        step("post", {"x": "a"}, {"y": "b", "z": "OUT"}),
    )
    assert error_of(pipeline(ensemble_steps=steps)) == (
        "ensemble 'pipe': ensemble output 'OUT' is never written: steps [0, 1] depend on each "
        "other in a cycle"
    )


def test_an_unused_intermediate_tensor():
    steps = (
        step("pre", {"x": "IN"}, {"y": "mid", "z": "spare"}),
        step("post", {"x": "mid"}, {"y": "OUT"}),
    )
    assert error_of(pipeline(ensemble_steps=steps)) == (
        "ensemble 'pipe': ensemble tensor 'spare' written by step 0 (model 'pre') is unused; "
        "drop it from the step's output_map"
    )


def test_validate_config_runs_the_graph_checks():
    with pytest.raises(ConfigError, match="ensemble_scheduling has no step"):
        validate_config(pipeline(ensemble_steps=()))


# -- the steps' models -------------------------------------------------------------------------


def steps_error(config, models=None) -> str:
    with pytest.raises(ConfigError) as info:
        check_ensemble_steps(config, lookup(models))
    return str(info.value)


def test_matching_steps_pass():
    check_ensemble_steps(pipeline(), lookup())


def test_a_missing_step_model():
    models = {("pre", None): STEPS[("pre", None)]}
    assert steps_error(pipeline(), models) == (
        "ensemble 'pipe': step 1 (model 'post'): the model is not available: model 'post' is "
        "not ready"
    )


def test_a_step_with_a_smaller_max_batch_size():
    models = dict(STEPS)
    models[("pre", None)] = model("pre", [fp32("x")], [fp32("y")], max_batch_size=4)
    assert steps_error(pipeline(), models) == (
        "ensemble 'pipe' allows max_batch_size 8 but its step model 'pre' only 4"
    )


def test_input_map_to_an_unknown_input():
    models = dict(STEPS)
    models[("pre", None)] = model("pre", [fp32("data")], [fp32("y")])
    assert steps_error(pipeline(), models) == (
        "ensemble 'pipe': step 0 (model 'pre'): input_map maps ensemble tensor 'IN' to 'x', "
        "which is not an input of the model (its inputs: data)"
    )


def test_an_unmapped_required_input_and_an_unmapped_optional_one():
    from dataclasses import replace

    models = dict(STEPS)
    models[("pre", None)] = model("pre", [fp32("x"), fp32("bias")], [fp32("y")])
    assert steps_error(pipeline(), models) == (
        "ensemble 'pipe': step 0 (model 'pre'): the model's input 'bias' is not mapped to any "
        "ensemble tensor in input_map"
    )
    optional_bias = replace(fp32("bias"), optional=True)
    models[("pre", None)] = model("pre", [fp32("x"), optional_bias], [fp32("y")])
    check_ensemble_steps(pipeline(), lookup(models))


def test_output_map_from_an_unknown_output():
    models = dict(STEPS)
    models[("post", 2)] = model("post", [fp32("x")], [fp32("result")])
    assert steps_error(pipeline(), models) == (
        "ensemble 'pipe': step 1 (model 'post'): output_map maps 'y' to ensemble tensor 'OUT', "
        "but the model has no such output (its outputs: result)"
    )


def test_inconsistent_data_types():
    models = dict(STEPS)
    int_y = TensorConfig(name="y", data_type=DataType.INT32, dims=(4,))
    models[("pre", None)] = model("pre", [fp32("x")], [int_y])
    assert steps_error(pipeline(), models) == (
        "ensemble 'pipe': ensemble tensor 'mid' has inconsistent data types: TYPE_INT32 in "
        "model 'pre' but TYPE_FP32 in model 'post'"
    )


def test_inconsistent_shapes():
    models = dict(STEPS)
    models[("post", 2)] = model("post", [fp32("x", (5,))], [fp32("y")])
    assert steps_error(pipeline(), models) == (
        "ensemble 'pipe': ensemble tensor 'mid' has inconsistent shapes: [-1, 4] in model 'pre' "
        "but [-1, 5] in model 'post'"
    )


def test_variable_dims_and_a_non_batching_step_fit():
    models = dict(STEPS)
    models[("pre", None)] = model("pre", [fp32("x", (-1,))], [fp32("y", (-1,))])
    # Without batching, the step sees the batch dimension as its own first dimension.
    models[("post", 2)] = model("post", [fp32("x", (-1, 4))], [fp32("y", (-1, 4))], 0)
    check_ensemble_steps(pipeline(), lookup(models))


# -- load order --------------------------------------------------------------------------------


def test_load_order_puts_ensembles_after_the_ensembles_they_use(tmp_path):
    def folder(name, text=None):
        path = tmp_path / name
        path.mkdir()
        if text is not None:
            (path / "config.pbtxt").write_text(text)
        return path

    inner = 'platform: "ensemble" ensemble_scheduling { step [ { model_name: "plain" } ] }'
    outer = 'platform: "ensemble" ensemble_scheduling { step [ { model_name: "b_inner" } ] }'
    folders = {
        "a_outer": folder("a_outer", outer),
        "b_inner": folder("b_inner", inner),
        "plain": folder("plain"),
        "unreadable": folder("unreadable", "input [ {"),
    }
    plain, ensembles = ensemble_load_order(folders)
    assert plain == ["plain", "unreadable"]
    assert ensembles == ["b_inner", "a_outer"]
