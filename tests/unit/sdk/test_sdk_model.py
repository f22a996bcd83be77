"""``Model`` over the real registry in a temporary home."""

from __future__ import annotations

from pathlib import Path

import pytest

from tidal.sdk import Model, WebserviceException, Workspace


@pytest.fixture
def ws(tmp_path) -> Workspace:
    return Workspace(tmp_path / "home")


@pytest.fixture
def model_dir(tmp_path) -> Path:
    root = tmp_path / "models"
    (root / "triton" / "m" / "1").mkdir(parents=True)
    (root / "triton" / "m" / "1" / "model.onnx").write_bytes(b"not really onnx")
    return root


def test_register_counts_versions_and_keeps_metadata(ws, model_dir):
    first = Model.register(
        ws,
        model_path=model_dir,
        model_name="densenet",
        tags={"area": "vision", "n": 3},
        description="a test",
        model_framework=Model.Framework.MULTI,
        model_framework_version="1",
    )
    assert (first.name, first.version, first.id) == ("densenet", 1, "densenet:1")
    assert first.tags == {"area": "vision", "n": "3"}
    assert first.description == "a test"
    assert first.model_framework == "Multi"
    assert first.model_framework_version == "1"
    second = Model.register(ws, str(model_dir), "densenet", properties={"p": "v"})
    assert second.version == 2
    assert second.model_framework == Model.Framework.CUSTOM  # Azure's default
    assert second.tags == {"p": "v"}
    assert Model(ws, "densenet") == second
    assert Model(ws, "densenet", version=1) == first
    assert Model(ws, id="densenet:1") == first
    assert Model(ws, "densenet", tags=["area"]) == first
    assert Model(ws, "densenet", tags=[["area", "vision"]]) == first


def test_list_filters(ws, model_dir, tmp_path):
    single = tmp_path / "weights.bin"
    single.write_bytes(b"w")
    Model.register(ws, model_dir, "a", tags={"k": "1"}, model_framework="Onnx")
    Model.register(ws, model_dir, "a", tags={"k": "2"})
    Model.register(ws, single, "b")
    assert [m.id for m in Model.list(ws)] == ["a:2", "a:1", "b:1"]
    assert [m.id for m in Model.list(ws, name="a")] == ["a:2", "a:1"]
    assert [m.id for m in Model.list(ws, tags=[["k", "1"]])] == ["a:1"]
    assert [m.id for m in Model.list(ws, tags={"k": None})] == ["a:2", "a:1"]
    assert [m.id for m in Model.list(ws, latest=True)] == ["a:2", "b:1"]
    assert [m.id for m in Model.list(ws, model_framework="onnx")] == ["a:1"]
    assert sorted(ws.models) == ["a", "b"] and ws.models["a"].version == 2


def test_download_and_delete(ws, model_dir, tmp_path):
    model = Model.register(ws, model_dir, "dl", model_framework=Model.Framework.MULTI)
    path = model.download(tmp_path / "out")
    assert path == str(tmp_path / "out" / "models")
    assert (Path(path) / "triton" / "m" / "1" / "model.onnx").read_bytes() == b"not really onnx"
    with pytest.raises(WebserviceException) as caught:
        model.download(tmp_path / "out")
    assert caught.value.kind == "invalid"
    assert model.download(tmp_path / "out", exist_ok=True) == path
    model.delete()
    with pytest.raises(WebserviceException) as missing:
        Model(ws, "dl")
    assert missing.value.kind == "not_found"


@pytest.mark.parametrize(
    ("call", "kind"),
    [
        (lambda ws, p: Model.register(ws, p, "bad name!"), "invalid"),
        (lambda ws, p: Model.register(ws, p.parent / "missing", "ok"), "not_found"),
        (lambda ws, p: Model.register(ws, p, "ok", model_framework="Cobol"), "invalid"),
        (lambda ws, p: Model(ws, id="x:zero"), "invalid"),
        (lambda ws, p: Model(ws), "invalid"),
        (lambda ws, p: Model(ws, "nothing"), "not_found"),
        (lambda ws, p: Model(ws, "nothing", tags=["t"]), "not_found"),
    ],
)
def test_errors_are_webservice_exceptions(ws, model_dir, call, kind):
    with pytest.raises(WebserviceException) as caught:
        call(ws, model_dir)
    assert caught.value.kind == kind, caught.value
