import pytest

from tidal.backends import backend_name_for, get_backend
from tidal.backends.onnxruntime import OnnxRuntimeBackend
from tidal.backends.registry import platform_for
from tidal.config import ConfigError, ModelConfig


def test_onnxruntime_backend_is_built_in_and_cached():
    backend = get_backend("onnxruntime")
    assert isinstance(backend, OnnxRuntimeBackend)
    assert backend.name == "onnxruntime"
    assert get_backend("onnxruntime") is backend


def test_unknown_backend_lists_the_known_ones():
    with pytest.raises(ConfigError) as info:
        get_backend("tensorrt_plan_xyz")
    message = str(info.value)
    assert message.startswith("unknown backend 'tensorrt_plan_xyz' (known: ")
    assert "onnxruntime" in message


def test_backend_from_config_wins(tmp_path):
    config = ModelConfig(name="m", backend="python", platform="onnxruntime_onnx")
    assert backend_name_for(config, [tmp_path]) == "python"


def test_backend_from_platform(tmp_path):
    assert backend_name_for(ModelConfig(name="m", platform="onnxruntime_onnx"), []) == (
        "onnxruntime"
    )


def test_unknown_platform_is_an_error():
    with pytest.raises(ConfigError) as info:
        backend_name_for(ModelConfig(name="m", platform="tensorflow_savedmodel"), [])
    assert str(info.value) == (
        "model 'm': unsupported platform 'tensorflow_savedmodel' (supported: ensemble, "
        "onnxruntime_onnx, pytorch_libtorch)"
    )


def test_backend_from_the_model_file(tmp_path):
    (tmp_path / "1").mkdir()
    (tmp_path / "2").mkdir()
    (tmp_path / "2" / "model.onnx").write_bytes(b"")
    dirs = [tmp_path / "1", tmp_path / "2"]
    assert backend_name_for(ModelConfig(name="m"), dirs) == "onnxruntime"


def test_backend_from_a_renamed_onnx_file(tmp_path):
    (tmp_path / "net.onnx").write_bytes(b"")
    config = ModelConfig(name="m", default_model_filename="net.onnx")
    assert backend_name_for(config, [tmp_path]) == "onnxruntime"


def test_model_folder_named_model_onnx_counts(tmp_path):
    (tmp_path / "model.onnx").mkdir()
    assert backend_name_for(ModelConfig(name="m"), [tmp_path]) == "onnxruntime"


@pytest.mark.parametrize("filename", ["", "model.bin"])
def test_no_known_model_file_is_an_error(tmp_path, filename):
    (tmp_path / "model.bin").write_bytes(b"")
    config = ModelConfig(name="m", default_model_filename=filename)
    with pytest.raises(ConfigError) as info:
        backend_name_for(config, [tmp_path])
    assert str(info.value) == (
        "model 'm': no backend or platform in the configuration and no known model file "
        "(such as model.onnx) in its version folders"
    )


def test_torchscript_from_platform_and_file(tmp_path):
    assert backend_name_for(ModelConfig(name="m", platform="pytorch_libtorch"), []) == "pytorch"
    (tmp_path / "model.pt").write_bytes(b"")
    assert backend_name_for(ModelConfig(name="m"), [tmp_path]) == "pytorch"


def test_ensemble_platform():
    assert backend_name_for(ModelConfig(name="m", platform="ensemble"), []) == "ensemble"
    assert get_backend("ensemble").name == "ensemble"


def test_platform_for():
    assert platform_for("onnxruntime") == "onnxruntime_onnx"
    assert platform_for("pytorch") == "pytorch_libtorch"
    assert platform_for("python") == ""
