"""The confinement rule on real folders: what a config may name, and how a refusal reads."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tidal.backends.python.environment import interpreter_for
from tidal.config.model_config import ModelConfig, ModelWarmup, TensorConfig, WarmupInput
from tidal.config.paths import inside_model_dir, is_model_name, scrub_paths
from tidal.config.pbtxt import ConfigError
from tidal.core.datatypes import DataType
from tidal.repository.confinement import check_model_paths


@pytest.fixture
def model_dir(tmp_path: Path) -> Path:
    folder = tmp_path / "repo" / "m"
    (folder / "1").mkdir(parents=True)
    (folder / "1" / "model.onnx").write_bytes(b"x")
    (tmp_path / "outside.onnx").write_bytes(b"x")
    return folder


def _inside(model_dir: Path, value: str, **kwargs) -> Path:
    return inside_model_dir(model_dir, value, model="m", field="f", start="1", **kwargs)


@pytest.mark.parametrize("value", ["model.onnx", "sub/../model.onnx", "../1/model.onnx", "new"])
def test_paths_inside_the_folder_are_accepted(model_dir, value):
    path = _inside(model_dir, value)
    assert path == Path(os.path.normpath(model_dir / "1" / value))


@pytest.mark.parametrize(
    "value", ["../../outside.onnx", "../..", "/etc/passwd", "", "a\0b", "../../repo/other/x"]
)
def test_paths_leaving_the_folder_are_refused(model_dir, value):
    with pytest.raises(ConfigError) as info:
        _inside(model_dir, value)
    assert str(info.value) == f"model 'm': f '{value}' is outside the model's folder"


def test_the_refusal_does_not_depend_on_what_exists_outside(model_dir, tmp_path):
    messages = []
    for value in ("../../../outside.onnx", "../../../missing.onnx"):
        with pytest.raises(ConfigError) as info:
            _inside(model_dir, value)
        messages.append(str(info.value).replace(value, "<v>"))
    assert messages[0] == messages[1]
    assert str(tmp_path) not in messages[0]


def test_symlink_out_is_refused_unless_allowed(model_dir, tmp_path):
    os.symlink(tmp_path / "outside.onnx", model_dir / "1" / "linked.onnx")
    with pytest.raises(ConfigError, match=r"'linked\.onnx' is outside"):
        _inside(model_dir, "linked.onnx")
    assert _inside(model_dir, "linked.onnx", allow_symlinks_out=True) == (
        model_dir / "1" / "linked.onnx"
    )
    # The flag follows links; it never lets an absolute path or a walk out through.
    for value in (str(tmp_path / "outside.onnx"), "../../../outside.onnx"):
        with pytest.raises(ConfigError):
            _inside(model_dir, value, allow_symlinks_out=True)


def test_symlink_that_stays_inside_is_accepted(model_dir):
    os.symlink(model_dir / "1" / "model.onnx", model_dir / "1" / "alias.onnx")
    assert _inside(model_dir, "alias.onnx") == model_dir / "1" / "alias.onnx"


def test_a_linked_model_folder_is_its_own_folder(model_dir, tmp_path):
    os.symlink(model_dir, tmp_path / "repo" / "alias")
    assert _inside(tmp_path / "repo" / "alias", "model.onnx").name == "model.onnx"


def test_shown_value_replaces_the_checked_one(model_dir):
    with pytest.raises(ConfigError) as info:
        inside_model_dir(model_dir, "../x", model="m", field="E", shown="$$DIR/../x")
    assert str(info.value) == "model 'm': E '$$DIR/../x' is outside the model's folder"


def _config(**fields) -> ModelConfig:
    return ModelConfig(name="m", **fields)


@pytest.mark.parametrize(
    ("config", "field", "shown"),
    [
        (_config(default_model_filename="../../x.onnx"), "default_model_filename", "../../x.onnx"),
        (
            _config(outputs=(TensorConfig("Y", DataType.FP32, (4,), label_filename="/etc/x"),)),
            "label_filename",
            "/etc/x",
        ),
        (
            _config(parameters={"EXECUTION_ENV_PATH": "$$TRITON_MODEL_DIRECTORY/../env"}),
            "EXECUTION_ENV_PATH",
            "$$TRITON_MODEL_DIRECTORY/../env",
        ),
        (
            _config(
                model_warmup=(
                    ModelWarmup("w", 1, (WarmupInput("X", DataType.FP32, (4,), "file", "../x"),)),
                )
            ),
            "input_data_file",
            "../x",
        ),
    ],
)
def test_every_path_field_is_checked(model_dir, config, field, shown):
    with pytest.raises(ConfigError) as info:
        check_model_paths(config, model_dir, {1: model_dir / "1"})
    assert f"model 'm': {field} '{shown}' " in str(info.value)


def test_the_backend_default_model_file_is_checked_in_every_version(model_dir, tmp_path):
    (model_dir / "2").mkdir()
    os.symlink(tmp_path / "outside.onnx", model_dir / "2" / "model.onnx")
    versions = {1: model_dir / "1", 2: model_dir / "2"}
    check_model_paths(_config(), model_dir, versions)  # no file named yet: nothing to check
    with pytest.raises(ConfigError, match=r"default_model_filename 'model\.onnx' is outside"):
        check_model_paths(_config(), model_dir, versions, default_filename="model.onnx")
    check_model_paths(
        _config(), model_dir, versions, default_filename="model.onnx", allow_symlinks_out=True
    )


@pytest.mark.parametrize("name", ["m", "resnet-50_v1.2", "a b", "..."])
def test_plain_names_are_model_names(name):
    assert is_model_name(name)


@pytest.mark.parametrize("name", ["", ".", "..", "a/b", "../m", "a\\b", "a\0b", "/"])
def test_path_like_names_are_not_model_names(name):
    assert not is_model_name(name)


def test_scrub_paths_names_files_from_the_repository(tmp_path):
    repo = tmp_path / "repo"
    text = f"Load model from {repo}/m/1/model.onnx failed"
    assert scrub_paths(text, repo) == "Load model from m/1/model.onnx failed"


def test_a_shared_environment_linked_in_needs_the_flag(model_dir, tmp_path):
    shared = tmp_path / "envs" / "py"
    (shared / "bin").mkdir(parents=True)
    (shared / "bin" / "python3").write_text("")
    os.symlink(shared, model_dir / "env")
    config = _config(parameters={"EXECUTION_ENV_PATH": "$$TRITON_MODEL_DIRECTORY/env"})
    with pytest.raises(ConfigError, match="EXECUTION_ENV_PATH"):
        check_model_paths(config, model_dir, {})
    check_model_paths(config, model_dir, {}, allow_symlinks_out=True)
    assert interpreter_for(config, model_dir) == str(model_dir / "env" / "bin" / "python3")
