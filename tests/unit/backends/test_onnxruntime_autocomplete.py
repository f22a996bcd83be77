from dataclasses import replace

import numpy as np
import onnxruntime as ort
import pytest
from onnx import TensorProto

from tidal.backends.onnxruntime import (
    DEFAULT_MAX_BATCH_SIZE,
    OnnxRuntimeBackend,
    check_against_graph,
    complete_from_graph,
    model_file,
)
from tidal.config import ConfigError, DynamicBatching, ModelConfig, TensorConfig
from tidal.config.validation import normalize_config, validate_config
from tidal.core import DataType, ErrorCode, InferenceError, InferInput, InferRequest, InferResponse
from tidal.core.types import RequestedOutput

from ..tiny_onnx import add_model, identity_model, identity_neg_model, write_model

FP32 = DataType.FP32
BATCHED_IN = [("x", FP32, (-1, 4))]
BATCHED_OUT = [("y", FP32, (-1, 4)), ("z", DataType.INT64, (-1,))]


def _t(name, dtype, dims, **kw):
    return TensorConfig(name, dtype, tuple(dims), **kw)


# -- complete_from_graph ------------------------------------------------------------------------


def test_empty_config_is_completed_from_a_batchable_graph():
    config = complete_from_graph(ModelConfig(name="m"), BATCHED_IN, BATCHED_OUT)
    assert config == ModelConfig(
        name="m",
        platform="onnxruntime_onnx",
        backend="onnxruntime",
        max_batch_size=DEFAULT_MAX_BATCH_SIZE,
        inputs=(_t("x", FP32, (4,)),),
        # [-1]: dims [1] reshaped to [], as Triton's ONNX Runtime backend completes it
        outputs=(_t("y", FP32, (4,)), _t("z", DataType.INT64, (1,), reshape=())),
        dynamic_batching=DynamicBatching(),
        default_model_filename="model.onnx",
    )
    assert DEFAULT_MAX_BATCH_SIZE == 4


def test_fixed_first_dimension_is_not_batched():
    config = complete_from_graph(
        ModelConfig(name="m"), [("x", FP32, (2, 4))], [("y", FP32, (2, 4))]
    )
    assert config.max_batch_size == 0
    assert config.dynamic_batching is None
    assert config.inputs == (_t("x", FP32, (2, 4)),)
    assert config.outputs == (_t("y", FP32, (2, 4)),)


def test_one_unbatchable_tensor_prevents_batching():
    config = complete_from_graph(
        ModelConfig(name="m"), BATCHED_IN, [("y", FP32, (-1, 4)), ("n", FP32, (1,))]
    )
    assert config.max_batch_size == 0
    assert config.outputs == (_t("y", FP32, (-1, 4)), _t("n", FP32, (1,)))


def test_scalar_tensor_prevents_batching():
    config = complete_from_graph(ModelConfig(name="m"), [("x", FP32, ())], [("y", FP32, ())])
    assert config.max_batch_size == 0
    assert config.inputs == (_t("x", FP32, ()),)


def test_full_rank_user_dims_mean_an_unbatched_model():
    user = ModelConfig(name="m", inputs=(_t("x", FP32, (-1, 4)),))
    config = complete_from_graph(user, BATCHED_IN, BATCHED_OUT)
    assert config.max_batch_size == 0
    assert config.dynamic_batching is None
    assert config.inputs == (_t("x", FP32, (-1, 4)),)
    assert config.outputs == (_t("y", FP32, (-1, 4)), _t("z", DataType.INT64, (-1,)))


def test_user_dims_without_batch_dimension_keep_batching():
    user = ModelConfig(name="m", inputs=(_t("x", FP32, (4,)),))
    config = complete_from_graph(user, BATCHED_IN, BATCHED_OUT)
    assert config.max_batch_size == 4
    assert config.inputs == (_t("x", FP32, (4,)),)


def test_user_max_batch_size_is_kept_and_no_dynamic_batching_is_added():
    user = ModelConfig(name="m", max_batch_size=16)
    config = complete_from_graph(user, BATCHED_IN, BATCHED_OUT)
    assert config.max_batch_size == 16
    assert config.dynamic_batching is None
    assert config.inputs == (_t("x", FP32, (4,)),)


def test_user_dynamic_batching_is_kept_when_batching_is_added():
    batching = DynamicBatching(max_queue_delay_microseconds=500)
    config = complete_from_graph(
        ModelConfig(name="m", dynamic_batching=batching), BATCHED_IN, BATCHED_OUT
    )
    assert config.dynamic_batching is batching


def test_user_platform_backend_and_filename_are_kept():
    user = ModelConfig(name="m", platform="p", backend="b", default_model_filename="f.onnx")
    config = complete_from_graph(user, BATCHED_IN, BATCHED_OUT)
    assert (config.platform, config.backend, config.default_model_filename) == ("p", "b", "f.onnx")


def test_missing_data_type_is_filled_and_user_dims_kept():
    user = ModelConfig(name="m", max_batch_size=2, inputs=(_t("x", None, (-1,)),))
    config = complete_from_graph(user, BATCHED_IN, BATCHED_OUT)
    assert config.inputs == (_t("x", FP32, (-1,)),)


def test_user_tensor_fields_are_preserved():
    user = ModelConfig(
        name="m", max_batch_size=2, inputs=(_t("x", None, (), optional=True, reshape=(2, 2)),)
    )
    (x,) = complete_from_graph(user, BATCHED_IN, BATCHED_OUT).inputs
    assert x == _t("x", FP32, (), optional=True, reshape=(2, 2))


def test_conflicting_data_type_is_a_config_error():
    user = ModelConfig(name="m", inputs=(_t("x", DataType.INT32, (4,)),))
    with pytest.raises(ConfigError) as info:
        complete_from_graph(user, BATCHED_IN, BATCHED_OUT)
    assert str(info.value) == (
        "model 'm': input 'x' has data_type TYPE_INT32 in the configuration but the model has "
        "TYPE_FP32"
    )


def test_missing_inputs_are_added_after_the_listed_ones():
    graph_in = [("a", FP32, (-1, 3)), ("b", FP32, (-1, 3)), ("c", FP32, (-1, 3))]
    user = ModelConfig(name="m", inputs=(_t("b", FP32, (3,)),))
    config = complete_from_graph(user, graph_in, [("s", FP32, (-1, 3))])
    assert [t.name for t in config.inputs] == ["b", "a", "c"]


def test_listed_outputs_are_a_deliberate_subset():
    user = ModelConfig(name="m", outputs=(_t("z", None, ()),))
    config = complete_from_graph(user, BATCHED_IN, BATCHED_OUT)
    assert config.outputs == (_t("z", DataType.INT64, (1,), reshape=()),)


def test_tensor_not_in_the_graph_is_left_for_the_check():
    stray = _t("ghost", FP32, (1,))
    user = ModelConfig(name="m", inputs=(stray,))
    config = complete_from_graph(user, BATCHED_IN, BATCHED_OUT)
    assert config.inputs == (stray, _t("x", FP32, (4,)))


# -- check_against_graph ------------------------------------------------------------------------

BATCHED = ModelConfig(
    name="m",
    max_batch_size=4,
    inputs=(_t("x", FP32, (4,)),),
    outputs=(_t("y", FP32, (4,)), _t("z", DataType.INT64, ())),
)


def test_matching_config_passes():
    assert check_against_graph(BATCHED, BATCHED_IN, BATCHED_OUT) is None


def test_subset_of_outputs_passes():
    check_against_graph(replace(BATCHED, outputs=BATCHED.outputs[1:]), BATCHED_IN, BATCHED_OUT)


@pytest.mark.parametrize(
    ("config_dims", "graph_dims"),
    [((-1,), (-1, 4)), ((4,), (-1, -1)), ((-1,), (-1, -1))],
)
def test_variable_dimensions_match_anything(config_dims, graph_dims):
    config = replace(BATCHED, inputs=(_t("x", FP32, config_dims),))
    check_against_graph(config, [("x", FP32, graph_dims)], BATCHED_OUT)


def test_reshape_is_compared_instead_of_dims():
    config = ModelConfig(
        name="m",
        inputs=(_t("x", FP32, (4,), reshape=(2, 2)),),
        outputs=(_t("y", FP32, (2, 2)),),
    )
    check_against_graph(config, [("x", FP32, (2, 2))], [("y", FP32, (2, 2))])
    with pytest.raises(ConfigError) as info:
        check_against_graph(config, [("x", FP32, (4,))], [("y", FP32, (2, 2))])
    assert str(info.value) == (
        "model 'm': input 'x' has reshape [2, 2] in the configuration but the model has [4]"
    )


@pytest.mark.parametrize(
    ("config", "graph_in", "graph_out", "message"),
    [
        (
            replace(BATCHED, inputs=(*BATCHED.inputs, _t("w", FP32, (1,)))),
            BATCHED_IN,
            BATCHED_OUT,
            "model 'm': input 'w' is not in the ONNX model (the model's inputs: x)",
        ),
        (
            replace(BATCHED, outputs=(_t("q", FP32, (4,)),)),
            BATCHED_IN,
            BATCHED_OUT,
            "model 'm': output 'q' is not in the ONNX model (the model's outputs: y, z)",
        ),
        (
            replace(BATCHED, outputs=(_t("y", DataType.FP16, (4,)),)),
            BATCHED_IN,
            BATCHED_OUT,
            "model 'm': output 'y' has data_type TYPE_FP16 in the configuration but the model "
            "has TYPE_FP32",
        ),
        (
            replace(BATCHED, inputs=(_t("x", None, (4,)),)),
            BATCHED_IN,
            BATCHED_OUT,
            "model 'm': input 'x' has data_type TYPE_INVALID in the configuration but the "
            "model has TYPE_FP32",
        ),
        (
            BATCHED,
            [("x", FP32, (8, 4))],
            BATCHED_OUT,
            "model 'm': input 'x': max_batch_size is 4 but the model's first dimension is "
            "[8], not a dynamic batch dimension",
        ),
        (
            BATCHED,
            [("x", FP32, ())],
            BATCHED_OUT,
            "model 'm': input 'x': max_batch_size is 4 but the model's first dimension is "
            "[], not a dynamic batch dimension",
        ),
        (
            replace(BATCHED, inputs=(_t("x", FP32, (5,)),)),
            BATCHED_IN,
            BATCHED_OUT,
            "model 'm': input 'x' has dims [5] in the configuration but the model has [4] "
            "after the batch dimension",
        ),
        (
            replace(BATCHED, inputs=(_t("x", FP32, (4, 1)),)),
            BATCHED_IN,
            BATCHED_OUT,
            "model 'm': input 'x' has dims [4, 1] in the configuration but the model has [4] "
            "after the batch dimension",
        ),
        (
            replace(BATCHED, max_batch_size=0, inputs=(_t("x", FP32, (4,)),)),
            BATCHED_IN,
            BATCHED_OUT,
            "model 'm': input 'x' has dims [4] in the configuration but the model has [-1, 4]",
        ),
        (
            BATCHED,
            [*BATCHED_IN, ("mask", DataType.BOOL, (-1, 4)), ("k", FP32, (-1,))],
            BATCHED_OUT,
            "model 'm': the ONNX model's input(s) ['mask', 'k'] are missing from the configuration",
        ),
    ],
)
def test_contradictions_are_config_errors(config, graph_in, graph_out, message):
    with pytest.raises(ConfigError) as info:
        check_against_graph(config, graph_in, graph_out)
    assert str(info.value) == message


def test_completed_config_passes_its_own_check():
    graph_in = [("a", DataType.BYTES, (-1, 1)), ("b", DataType.BF16, (-1, 2, 2))]
    graph_out = [("c", DataType.UINT8, (-1, 7))]
    config = complete_from_graph(ModelConfig(name="m"), graph_in, graph_out)
    check_against_graph(config, graph_in, graph_out)
    validate_config(normalize_config(config))


# -- a real ONNX model through OnnxRuntimeBackend ---------------------------------------------


@pytest.fixture
def identity_neg_dir(tmp_path):
    version_dir = tmp_path / "m" / "1"
    write_model(version_dir, identity_neg_model())
    return version_dir


def _request(array, name="x", datatype=FP32, outputs=None, request_id=None):
    return InferRequest(
        "m",
        [InferInput(name, datatype, array.shape, array)],
        id=request_id,
        outputs=outputs,
    )


def test_auto_complete_reads_the_onnx_graph(identity_neg_dir):
    config = OnnxRuntimeBackend().auto_complete(ModelConfig(name="m"), identity_neg_dir)
    assert config == ModelConfig(
        name="m",
        platform="onnxruntime_onnx",
        backend="onnxruntime",
        max_batch_size=4,
        inputs=(_t("x", FP32, (4,)),),
        outputs=(_t("y", FP32, (4,)), _t("z", FP32, (4,))),
        dynamic_batching=DynamicBatching(),
        default_model_filename="model.onnx",
    )


def test_auto_complete_maps_symbolic_and_missing_dims_to_minus_one(tmp_path):
    write_model(tmp_path, identity_model(("n", None, 3), TensorProto.INT16))
    config = OnnxRuntimeBackend().auto_complete(ModelConfig(name="m"), tmp_path)
    assert config.max_batch_size == 4
    assert config.inputs == (_t("x", DataType.INT16, (-1, 3)),)


def test_auto_complete_of_a_fixed_shape_model(tmp_path):
    write_model(tmp_path, identity_model((2, 3), TensorProto.UINT8))
    config = OnnxRuntimeBackend().auto_complete(ModelConfig(name="m"), tmp_path)
    assert config.max_batch_size == 0
    assert config.inputs == (_t("x", DataType.UINT8, (2, 3)),)
    assert config.outputs == (_t("y", DataType.UINT8, (2, 3)),)


def test_instance_runs_one_request(identity_neg_dir):
    backend = OnnxRuntimeBackend()
    config = normalize_config(backend.auto_complete(ModelConfig(name="m"), identity_neg_dir))
    validate_config(config)
    instance = backend.create_instance(config, identity_neg_dir, "cpu", 1)
    try:
        data = np.arange(8, dtype=np.float32).reshape(2, 4)
        (response,) = instance.execute([_request(data, request_id="r1")])
    finally:
        instance.close()
    assert isinstance(response, InferResponse)
    assert (response.model_name, response.model_version, response.id) == ("m", 1, "r1")
    assert [o.name for o in response.outputs] == ["y", "z"]
    y, z = response.outputs
    assert (y.datatype, y.shape) == (FP32, (2, 4))
    np.testing.assert_array_equal(y.data, data)
    np.testing.assert_array_equal(z.data, -data)
    assert z.data.dtype == np.float32


def test_instance_merges_a_batch_and_splits_the_results(identity_neg_dir):
    backend = OnnxRuntimeBackend()
    config = normalize_config(backend.auto_complete(ModelConfig(name="m"), identity_neg_dir))
    instance = backend.create_instance(config, identity_neg_dir, "cpu", 3)
    first = np.full((1, 4), 1.0, np.float32)
    second = np.full((3, 4), 2.0, np.float32)
    results = instance.execute([_request(first, outputs=[RequestedOutput("z")]), _request(second)])
    assert [r.model_version for r in results] == [3, 3]
    assert [o.name for o in results[0].outputs] == ["z"]
    np.testing.assert_array_equal(results[0].outputs[0].data, -first)
    assert [o.name for o in results[1].outputs] == ["y", "z"]
    np.testing.assert_array_equal(results[1].outputs[0].data, second)
    np.testing.assert_array_equal(results[1].outputs[1].data, -second)


def test_empty_output_list_returns_every_output(identity_neg_dir):
    backend = OnnxRuntimeBackend()
    config = normalize_config(backend.auto_complete(ModelConfig(name="m"), identity_neg_dir))
    instance = backend.create_instance(config, identity_neg_dir, "cpu", 1)
    data = np.ones((1, 4), np.float32)
    (response,) = instance.execute([_request(data, outputs=[])])
    assert [o.name for o in response.outputs] == ["y", "z"]


def test_string_model_takes_and_returns_bytes(tmp_path):
    write_model(tmp_path, identity_model(("batch", 2), TensorProto.STRING))
    backend = OnnxRuntimeBackend()
    config = normalize_config(backend.auto_complete(ModelConfig(name="m"), tmp_path))
    assert config.inputs == (_t("x", DataType.BYTES, (2,)),)
    instance = backend.create_instance(config, tmp_path, "cpu", 1)
    data = np.array([[b"hello", "w\u00f6rld".encode()]], dtype=object)
    (response,) = instance.execute([_request(data, datatype=DataType.BYTES)])
    (y,) = response.outputs
    assert y.datatype is DataType.BYTES
    assert y.data.dtype == object
    assert y.data.tolist() == [[b"hello", "w\u00f6rld".encode()]]


def test_failing_request_becomes_an_internal_error(tmp_path):
    write_model(tmp_path, add_model())
    backend = OnnxRuntimeBackend()
    config = normalize_config(backend.auto_complete(ModelConfig(name="m"), tmp_path))
    instance = backend.create_instance(config, tmp_path, "cpu", 2)
    a = np.ones((1, 3), np.float32)
    good = InferRequest(
        "m", [InferInput("a", FP32, (1, 3), a), InferInput("b", FP32, (1, 3), a * 2)]
    )
    bad = InferRequest("m", [InferInput("a", FP32, (1, 3), a)])  # "b" is missing
    results = instance.execute([good, bad, good])
    np.testing.assert_array_equal(results[0].outputs[0].data, a * 3)
    np.testing.assert_array_equal(results[2].outputs[0].data, a * 3)
    error = results[1]
    assert isinstance(error, InferenceError)
    assert error.code is ErrorCode.INTERNAL
    assert error.message.startswith("model 'm' version 2 failed to execute: ")


def test_create_instance_rejects_a_config_that_contradicts_the_model(identity_neg_dir):
    config = ModelConfig(
        name="m",
        max_batch_size=4,
        inputs=(_t("x", DataType.INT32, (4,)),),
        outputs=(_t("y", FP32, (4,)),),
    )
    with pytest.raises(ConfigError) as info:
        OnnxRuntimeBackend().create_instance(config, identity_neg_dir, "cpu", 1)
    assert str(info.value) == (
        "model 'm': input 'x' has data_type TYPE_INT32 in the configuration but the model has "
        "TYPE_FP32"
    )


def test_missing_model_file_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError) as info:
        OnnxRuntimeBackend().auto_complete(ModelConfig(name="m"), tmp_path)
    # Named as <model>/<version folder>/<file>, never by the server's absolute path.
    assert str(info.value) == f"model 'm': model file 'm/{tmp_path.name}/model.onnx' not found"


def test_unreadable_model_file_is_a_config_error(tmp_path):
    (tmp_path / "model.onnx").write_bytes(b"not an onnx model")
    with pytest.raises(ConfigError) as info:
        OnnxRuntimeBackend().auto_complete(ModelConfig(name="m"), tmp_path)
    shown = f"{tmp_path.parent.name}/{tmp_path.name}/model.onnx"  # from the repository
    assert str(info.value).startswith(f"model 'm': ONNX Runtime cannot load '{shown}': ")
    assert str(tmp_path) not in str(info.value)


def test_model_file_honours_default_model_filename_and_folders(tmp_path):
    write_model(tmp_path, identity_neg_model(), filename="net.onnx")
    (tmp_path / "folder.onnx").mkdir()
    write_model(tmp_path / "folder.onnx", identity_neg_model())
    named = ModelConfig(name="m", default_model_filename="net.onnx")
    folder = ModelConfig(name="m", default_model_filename="folder.onnx")
    assert model_file(named, tmp_path) == tmp_path / "net.onnx"
    assert model_file(folder, tmp_path) == tmp_path / "folder.onnx" / "model.onnx"
    assert OnnxRuntimeBackend().auto_complete(named, tmp_path).default_model_filename == "net.onnx"


def test_thread_count_parameter_must_be_an_integer(identity_neg_dir):
    config = ModelConfig(name="m", parameters={"intra_op_thread_count": "two"})
    config = complete_from_graph(config, [("x", FP32, (-1, 4))], [("y", FP32, (-1, 4))])
    with pytest.raises(ConfigError) as info:
        OnnxRuntimeBackend().create_instance(config, identity_neg_dir, "cpu", 1)
    assert str(info.value) == (
        "model 'm': parameter intra_op_thread_count must be an integer, got 'two'"
    )


@pytest.mark.skipif(
    "CUDAExecutionProvider" in ort.get_available_providers(), reason="CUDA is available"
)
def test_gpu_instance_without_cuda_is_a_config_error(identity_neg_dir):
    config = complete_from_graph(
        ModelConfig(name="m"), [("x", FP32, (-1, 4))], [("y", FP32, (-1, 4))]
    )
    with pytest.raises(ConfigError) as info:
        OnnxRuntimeBackend().create_instance(config, identity_neg_dir, "gpu:0", 1)
    assert str(info.value).startswith(
        "model 'm': instance_group kind KIND_GPU needs the CUDA execution provider"
    )


# -- 1-D [-1] tensors: Triton's ONNX Runtime backend batches them, dims [1] reshaped to [] ------


def test_one_dimensional_dynamic_tensors_batch_with_dims_one_reshaped_to_scalar():
    graph_in, graph_out = [("x", FP32, (-1,))], [("y", FP32, (-1,)), ("z", FP32, (-1, 2))]
    config = complete_from_graph(ModelConfig(name="m"), graph_in, graph_out)
    assert config.max_batch_size == DEFAULT_MAX_BATCH_SIZE
    assert config.dynamic_batching == DynamicBatching()
    assert config.inputs == (_t("x", FP32, (1,), reshape=()),)
    assert config.outputs == (_t("y", FP32, (1,), reshape=()), _t("z", FP32, (2,)))
    check_against_graph(config, graph_in, graph_out)
    validate_config(config)


def test_one_dimensional_tensor_listed_without_dims_is_completed_the_same_way():
    user = ModelConfig(name="m", inputs=(TensorConfig("x", None, ()),))
    config = complete_from_graph(user, [("x", FP32, (-1,))], [("y", FP32, (-1,))])
    assert config.inputs == (_t("x", FP32, (1,), reshape=()),)


def test_one_dimensional_dynamic_model_loads_and_runs_batched(tmp_path):
    write_model(tmp_path, identity_model(("n",), TensorProto.FLOAT))
    backend = OnnxRuntimeBackend()
    config = normalize_config(backend.auto_complete(ModelConfig(name="m"), tmp_path))
    validate_config(config)
    assert (config.max_batch_size, config.inputs[0].dims, config.inputs[0].reshape) == (
        4,
        (1,),
        (),
    )
    instance = backend.create_instance(config, tmp_path, "cpu", 1)
    try:
        data = np.array([[1.5], [2.5], [-3.0]], np.float32)
        request = InferRequest("m", [InferInput("x", FP32, (3, 1), data)])
        (response,) = instance.execute([request])
    finally:
        instance.close()
    (output,) = response.outputs
    assert output.shape == (3, 1)
    np.testing.assert_array_equal(output.data, data)
