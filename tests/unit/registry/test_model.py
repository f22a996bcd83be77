import pytest

import tidal.registry
from tidal.registry import FRAMEWORKS, ModelVersion, RegistryError, parse_model_id
from tidal.registry.model import canonical_framework, validate_name


def test_public_names_are_pinned():
    assert tidal.registry.__all__ == [
        "FRAMEWORKS",
        "ModelRegistry",
        "ModelVersion",
        "RegistryError",
        "parse_model_id",
    ]


@pytest.mark.parametrize(
    ("text", "expected"),
    [("resnet", ("resnet", None)), ("resnet:3", ("resnet", 3)), ("a.b-c_d:12", ("a.b-c_d", 12))],
)
def test_parse_model_id(text, expected):
    assert parse_model_id(text) == expected


@pytest.mark.parametrize("text", ["", ":1", "m:", "m:0", "m:-1", "m:x", "m:1:2", "bad name:1"])
def test_parse_model_id_refuses(text):
    with pytest.raises(RegistryError) as info:
        parse_model_id(text)
    assert info.value.kind == "invalid"


@pytest.mark.parametrize("name", ["a", "A1", "9", "my-model.v2_final", "a" * 255])
def test_valid_names(name):
    assert validate_name(name) == name


@pytest.mark.parametrize("name", ["", "-a", ".a", "_a", "a b", "a/b", "a:b", "é", "a" * 256])
def test_invalid_names_name_the_rule(name):
    with pytest.raises(RegistryError) as info:
        validate_name(name)
    assert info.value.kind == "invalid"
    assert repr(name) in str(info.value)
    assert "between 1 and 255 characters" in str(info.value)


def test_frameworks_are_azures_spellings_in_any_case():
    assert FRAMEWORKS == (
        "Custom",
        "Multi",
        "Onnx",
        "PyTorch",
        "ScikitLearn",
        "TensorFlow",
        "TfKeras",
    )
    assert canonical_framework("multi") == "Multi"
    assert canonical_framework("PYTORCH") == "PyTorch"
    assert canonical_framework(" tfkeras ") == "TfKeras"
    with pytest.raises(RegistryError, match="unknown model framework 'caffe'"):
        canonical_framework("caffe")


def test_to_json_uses_azure_cli_keys():
    record = ModelVersion(
        name="m",
        version=2,
        framework="Onnx",
        framework_version="1.16",
        tags={"k": "v"},
        description="d",
        created_at="2026-01-01T00:00:00+00:00",
        root_name="model.onnx",
        is_dir=False,
        file_count=1,
        size_bytes=10,
    )
    data = record.to_json()
    assert record.id == "m:2"
    assert {k: data[k] for k in ("name", "version", "id", "framework", "frameworkVersion")} == {
        "name": "m",
        "version": 2,
        "id": "m:2",
        "framework": "Onnx",
        "frameworkVersion": "1.16",
    }
    assert data["tags"] == {"k": "v"}
    assert data["createdTime"] == "2026-01-01T00:00:00+00:00"
    assert data["description"] == "d"
