"""Loading small model folders from disk into the model table, in-process."""

import asyncio

import pytest
from onnx import TensorProto

from tidal.core import ErrorCode, InferenceError, ModelState
from tidal.repository import ModelRepository
from tidal.repository.loader import prepare_config
from tidal.scheduling.direct import DirectScheduler
from tidal.scheduling.dynamic_batcher import DynamicBatchScheduler

from ..tiny_onnx import identity_model, identity_neg_model, write_model

FIXED_CONFIG = """
name: "fixed"
platform: "onnxruntime_onnx"
input [{ name: "x" data_type: TYPE_INT32 dims: [ 2 ] }]
output [{ name: "y" data_type: TYPE_INT32 dims: [ 2 ] }]
version_policy { all { } }
"""


@pytest.fixture
def repo(tmp_path):
    root = tmp_path / "repo"
    # auto-completed: no config.pbtxt
    write_model(root / "auto" / "1", identity_neg_model())
    # complete config, two versions, both served
    (root / "fixed").mkdir(parents=True)
    (root / "fixed" / "config.pbtxt").write_text(FIXED_CONFIG)
    write_model(root / "fixed" / "1", identity_model((2,), TensorProto.INT32))
    write_model(root / "fixed" / "3", identity_model((2,), TensorProto.INT32))
    # unreadable config
    (root / "broken").mkdir()
    (root / "broken" / "config.pbtxt").write_text("input [ {")
    # a version whose model file cannot be loaded
    (root / "corrupt").mkdir()
    (root / "corrupt" / "config.pbtxt").write_text(FIXED_CONFIG.replace('"fixed"', '"corrupt"'))
    write_model(root / "corrupt" / "1", b"not onnx")
    # no version folder
    (root / "empty").mkdir()
    (root / "empty" / "config.pbtxt").write_text(FIXED_CONFIG.replace('"fixed"', '"empty"'))
    return root


def load(repo, auto_complete=True):
    repository = ModelRepository([repo], auto_complete=auto_complete)
    failed = asyncio.run(repository.load_all())
    return repository, failed


def test_load_all_reports_the_failed_models(repo):
    repository, failed = load(repo)
    assert [r.name for r in failed] == ["broken", "corrupt", "empty"]
    assert [r.name for r in repository.records()] == ["auto", "broken", "corrupt", "empty", "fixed"]
    states = {r.name: r.state for r in repository.records()}
    assert states == {
        "auto": ModelState.READY,
        "broken": ModelState.UNAVAILABLE,
        "corrupt": ModelState.UNAVAILABLE,
        "empty": ModelState.UNAVAILABLE,
        "fixed": ModelState.READY,
    }
    assert not repository.all_ready()


def test_failure_reasons(repo):
    repository, _ = load(repo)
    broken = repository.record("broken")
    assert broken.config is None
    assert broken.reason.startswith("model 'broken': broken/config.pbtxt: ")
    empty = repository.record("empty")
    assert empty.reason == ("model 'empty': no version folder matches the version policy")
    corrupt = repository.record("corrupt")  # auto-complete already fails to open it
    assert corrupt.versions == {}
    assert corrupt.reason.startswith("model 'corrupt': ONNX Runtime cannot load ")


def test_version_that_fails_to_load_is_recorded_without_auto_complete(repo):
    repository, _ = load(repo, auto_complete=False)
    corrupt = repository.record("corrupt")
    assert corrupt.config is not None
    assert corrupt.versions[1].state is ModelState.UNAVAILABLE
    assert corrupt.versions[1].loaded is None
    assert corrupt.versions[1].reason.startswith("model 'corrupt': ONNX Runtime cannot load ")
    assert corrupt.reason == corrupt.versions[1].reason
    with pytest.raises(InferenceError) as info:
        repository.resolve("corrupt", 1)
    assert info.value.code is ErrorCode.UNAVAILABLE
    assert info.value.message.startswith(
        "Request for unknown model: 'corrupt' version 1 is not at ready state: "
        "model 'corrupt': ONNX Runtime cannot load "
    )


def test_auto_completed_model(repo):
    repository, _ = load(repo)
    loaded = repository.resolve("auto")
    assert loaded.version == 1
    assert loaded.config.max_batch_size == 4
    assert [t.name for t in loaded.config.outputs] == ["y", "z"]
    assert isinstance(loaded.scheduler, DynamicBatchScheduler)


def test_version_policy_all_serves_every_version(repo):
    repository, _ = load(repo)
    assert repository.record("fixed").ready_versions() == [1, 3]
    assert repository.resolve("fixed").version == 3
    assert repository.resolve("fixed", 1).version == 1
    assert isinstance(repository.resolve("fixed").scheduler, DirectScheduler)


@pytest.mark.parametrize(
    ("name", "version", "code", "message"),
    [
        ("nope", None, ErrorCode.NOT_FOUND, "Request for unknown model: 'nope' is not found"),
        (
            "fixed",
            2,
            ErrorCode.NOT_FOUND,
            "Request for unknown model: 'fixed' version 2 is not found",
        ),
        (
            "empty",
            None,
            ErrorCode.UNAVAILABLE,
            "Request for unknown model: 'empty' has no available versions: model 'empty': "
            "no version folder matches the version policy",
        ),
        (
            "corrupt",
            None,
            ErrorCode.UNAVAILABLE,
            "Request for unknown model: 'corrupt' has no available versions: "
            "model 'corrupt': ONNX Runtime cannot load",
        ),
    ],
)
def test_resolve_errors(repo, name, version, code, message):
    repository, _ = load(repo)
    with pytest.raises(InferenceError) as info:
        repository.resolve(name, version)
    assert info.value.code is code
    assert info.value.message.startswith(message)
    assert repository.is_ready(name, version) is False


def test_is_ready(repo):
    repository, _ = load(repo)
    assert repository.is_ready("fixed")
    assert repository.is_ready("fixed", 1)
    assert repository.is_ready("auto", 1)


def test_without_auto_complete_a_config_is_required(repo):
    repository, failed = load(repo, auto_complete=False)
    assert "auto" in [r.name for r in failed]
    assert repository.record("auto").reason == "model 'auto': the configuration has no inputs"
    assert repository.record("fixed").state is ModelState.READY


def test_unload_all_closes_everything(repo):
    async def scenario():
        repository = ModelRepository([repo], auto_complete=True)
        await repository.load_all()
        await repository.unload_all()
        return repository

    repository = asyncio.run(scenario())
    for record in repository.records():
        assert record.state is ModelState.UNAVAILABLE
        assert all(v.loaded is None for v in record.versions.values())
    with pytest.raises(InferenceError) as info:
        repository.resolve("fixed")
    assert info.value.code is ErrorCode.UNAVAILABLE


def test_prepare_config_fills_name_backend_and_platform(repo):
    config, backend, versions = prepare_config(repo / "auto", auto_complete=True)
    assert (config.name, config.backend, config.platform) == (
        "auto",
        "onnxruntime",
        "onnxruntime_onnx",
    )
    assert backend.name == "onnxruntime"
    assert versions == {1: repo / "auto" / "1"}
    assert config.instance_groups[0].name == "auto_0"
