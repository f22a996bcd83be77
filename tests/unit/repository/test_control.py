"""Model control in-process: modes, load and reload semantics, overrides, unload, polling."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
from onnx import TensorProto

from tidal.config import ServerSettings
from tidal.core import DataType, ErrorCode, InferenceError, InferInput, InferRequest, ModelState
from tidal.repository import ModelRepository
from tidal.repository.control import NOT_ALLOWED, ModelControl
from tidal.repository.manager import UNLOADED, load_failure
from tidal.repository.poll import RepositoryPoller

from ..tiny_onnx import identity_model, identity_neg_model, write_model
from ..waiting import until

CONFIG = """
name: "{name}"
platform: "onnxruntime_onnx"
max_batch_size: 4
input [{{ name: "x" data_type: TYPE_FP32 dims: [ 2 ] }}]
output [{{ name: "y" data_type: TYPE_FP32 dims: [ 2 ] }}]
{extra}
"""


def add_model(root: Path, name: str, versions=(1,), extra: str = "") -> Path:
    folder = root / name
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.pbtxt").write_text(CONFIG.format(name=name, extra=extra))
    for version in versions:
        write_model(folder / str(version), identity_model(("batch", 2), TensorProto.FLOAT))
    return folder


def touch_later(path: Path) -> None:
    """Change a file's mtime for sure, even on coarse clocks."""
    stat = path.stat()
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))


def request(name: str) -> InferRequest:
    data = np.ones((1, 2), np.float32)
    return InferRequest(name, [InferInput("x", DataType.FP32, (1, 2), data)])


def run(body, root: Path, **settings):
    async def scenario():
        repository = ModelRepository([root], auto_complete=True)
        control = ModelControl(repository, ServerSettings(**settings))
        failed = await control.start()
        try:
            return await body(repository, control, failed)
        finally:
            await control.stop()
            await repository.unload_all()

    return asyncio.run(scenario())


def test_mode_none_loads_everything_and_refuses_the_api(tmp_path):
    add_model(tmp_path, "a")
    add_model(tmp_path, "b")

    async def body(repository, control, failed):
        assert failed == []
        assert [r.name for r in repository.records()] == ["a", "b"]
        for call in (control.load("a"), control.unload("a")):
            with pytest.raises(InferenceError) as info:
                await call
            assert (info.value.code, info.value.message) == (ErrorCode.UNAVAILABLE, NOT_ALLOWED)

    run(body, tmp_path)


def test_explicit_mode_loads_the_start_up_models_only(tmp_path):
    add_model(tmp_path, "a")
    add_model(tmp_path, "b")

    async def body(repository, control, failed):
        assert failed == []
        assert [r.name for r in repository.records()] == ["a"]
        await control.load("b")
        assert repository.is_ready("b")

    run(body, tmp_path, model_control_mode="explicit", load_model=("a",))


def test_explicit_mode_reports_a_missing_start_up_model(tmp_path):
    add_model(tmp_path, "a")

    async def body(repository, control, failed):
        assert [(r.name, r.state) for r in failed] == [("ghost", ModelState.UNAVAILABLE)]
        assert "not found in any model repository" in failed[0].reason
        assert repository.get("ghost") is None

    run(body, tmp_path, model_control_mode="explicit", load_model=("a", "ghost"))


def test_star_loads_every_model(tmp_path):
    add_model(tmp_path, "a")
    add_model(tmp_path, "b")

    async def body(repository, control, failed):
        assert [r.name for r in repository.records()] == ["a", "b"]

    run(body, tmp_path, model_control_mode="explicit", load_model=("*",))


def test_unload_keeps_an_unloaded_record_and_does_not_block_readiness(tmp_path):
    add_model(tmp_path, "a", versions=(1, 2), extra="version_policy { all { } }")

    async def body(repository, control, failed):
        await control.unload("a")
        record = repository.record("a")
        assert record.state is ModelState.UNAVAILABLE
        assert [(v.state, v.reason, v.loaded) for v in record.versions.values()] == [
            (ModelState.UNAVAILABLE, UNLOADED, None)
        ] * 2
        assert repository.all_ready()
        with pytest.raises(InferenceError) as info:
            repository.resolve("a")
        assert info.value.code is ErrorCode.UNAVAILABLE
        await control.unload("never-heard-of")  # nothing to do

    run(body, tmp_path, model_control_mode="explicit", load_model=("*",))


def test_unload_waits_for_the_accepted_requests(tmp_path):
    add_model(tmp_path, "a")

    async def body(repository, control, failed):
        loaded = repository.resolve("a")
        pending = [asyncio.ensure_future(loaded.scheduler.submit(request("a"))) for _ in range(5)]
        await asyncio.sleep(0)  # submitted
        await control.unload("a")
        assert all(task.done() and task.exception() is None for task in pending)

    run(body, tmp_path, model_control_mode="explicit", load_model=("a",))


def test_load_of_an_unchanged_folder_keeps_the_loaded_versions(tmp_path):
    folder = add_model(tmp_path, "a")

    async def body(repository, control, failed):
        first = repository.resolve("a")
        await control.load("a")
        assert repository.resolve("a") is first
        touch_later(folder / "config.pbtxt")
        await control.load("a")
        second = repository.resolve("a")
        assert second is not first
        await asyncio.sleep(0.05)  # the replaced version drains and closes in the background
        with pytest.raises(InferenceError) as info:
            await first.scheduler.submit(request("a"))
        assert info.value.code is ErrorCode.UNAVAILABLE

    run(body, tmp_path, model_control_mode="explicit", load_model=("a",))


def test_failed_reload_keeps_the_old_record(tmp_path):
    folder = add_model(tmp_path, "a")

    async def body(repository, control, failed):
        before = repository.record("a")
        (folder / "config.pbtxt").write_text("input [ {")
        with pytest.raises(InferenceError) as info:
            await control.load("a")
        assert info.value.code is ErrorCode.INVALID_ARG
        assert info.value.message.startswith("load failed for model 'a': model 'a': ")
        assert repository.record("a") is before
        assert repository.is_ready("a")

    run(body, tmp_path, model_control_mode="explicit", load_model=("a",))


def test_failed_first_load_shows_its_reason(tmp_path):
    folder = add_model(tmp_path, "a", versions=(1, 2), extra="version_policy { all { } }")
    write_model(folder / "1", b"not onnx")  # auto-complete reads version 2, which is fine

    async def body(repository, control, failed):
        with pytest.raises(InferenceError) as info:
            await control.load("a")
        assert info.value.message.startswith(
            "load failed for model 'a': version 1 is at UNAVAILABLE state: "
        )
        record = repository.record("a")  # installed: version 2 serves, version 1 says why
        assert record.versions[1].state is ModelState.UNAVAILABLE
        assert repository.resolve("a").version == 2
        assert not repository.all_ready()
        assert load_failure(record).startswith("version 1 is at UNAVAILABLE state: ")

    run(body, tmp_path, model_control_mode="explicit")


def test_load_errors(tmp_path):
    add_model(tmp_path, "a")
    (tmp_path / "twin").mkdir()
    other = tmp_path.parent / f"{tmp_path.name}-other"
    add_model(other, "twin")

    async def scenario():
        repository = ModelRepository([tmp_path, other], auto_complete=True)
        control = ModelControl(repository, ServerSettings(model_control_mode="explicit"))
        try:
            for name, kwargs, code, text in [
                ("ghost", {}, ErrorCode.INTERNAL, "failed to poll from model repository"),
                ("twin", {}, ErrorCode.INTERNAL, "not unique across all model repositories"),
                ("a", {"files": {"file:1/m": b""}}, ErrorCode.INVALID_ARG, "must be specified"),
                ("a", {"config": "[1]"}, ErrorCode.INVALID_ARG, "Invalid config override"),
            ]:
                with pytest.raises(InferenceError) as info:
                    await control.load(name, **kwargs)
                assert info.value.code is code, info.value
                assert text in info.value.message
        finally:
            await repository.unload_all()
            shutil.rmtree(other)

    asyncio.run(scenario())


def test_config_override_and_files(tmp_path):
    add_model(tmp_path, "a")
    config = json.dumps(
        {
            "platform": "onnxruntime_onnx",
            "max_batch_size": 2,
            "input": [{"name": "x", "data_type": "TYPE_FP32", "dims": [2]}],
            "output": [{"name": "y", "data_type": "TYPE_FP32", "dims": [2]}],
        }
    )

    async def body(repository, control, failed):
        await control.load("a", config=config)
        assert repository.resolve("a").config.max_batch_size == 2
        assert repository.record("a").fingerprint is None
        await control.load("a")  # the folder's own config again
        assert repository.resolve("a").config.max_batch_size == 4

        model = identity_neg_model(("batch", 2))
        pushed = config.replace(
            '"dims": [2]}]}', '"dims": [2]}, {"name": "z", "data_type": "TYPE_FP32", "dims": [2]}]}'
        )
        await control.load("pushed", config=pushed, files={"file:1/model.onnx": model})
        record = repository.record("pushed")
        folder = record.override_dir
        assert folder is not None and (folder / "1" / "model.onnx").is_file()
        assert [t.name for t in repository.resolve("pushed").config.outputs] == ["y", "z"]
        await control.unload("pushed")
        assert not folder.exists()

    run(body, tmp_path, model_control_mode="explicit", load_model=("a",))


def test_unload_dependents_follows_ensembles(tmp_path):
    add_model(tmp_path, "a")

    async def body(repository, control, failed):
        record = repository.record("a")
        assert control._dependents("a") == []
        # An ensemble using "a" and one using that ensemble, as the table would hold them.
        from dataclasses import replace

        from tidal.config.model_config import EnsembleStep
        from tidal.repository.model_table import ModelRecord

        for name, step in (("outer", "inner"), ("inner", "a")):
            config = replace(record.config, name=name, ensemble_steps=(EnsembleStep(step),))
            repository._models[name] = ModelRecord(name, tmp_path, config, ModelState.READY)
        assert control._dependents("a") == ["outer", "inner"]
        await control.unload("a", unload_dependents=True)
        for name in ("a", "inner", "outer"):
            assert repository.record(name).reason == UNLOADED

    run(body, tmp_path, model_control_mode="explicit", load_model=("a",))


def test_poll_once_adds_changes_and_removes(tmp_path):
    add_model(tmp_path, "a")

    async def body(repository, control, failed):
        poller = RepositoryPoller(repository, interval=3600)
        await poller.poll_once()
        first = repository.resolve("a")
        assert repository.resolve("a") is first  # nothing changed: nothing reloaded

        add_model(tmp_path, "b")
        add_model(tmp_path, "a", versions=(2,))
        await poller.poll_once()
        assert repository.resolve("a").version == 2
        assert repository.record("a").ready_versions() == [2]
        assert repository.is_ready("b")

        shutil.rmtree(tmp_path / "b")
        (tmp_path / "a" / "config.pbtxt").write_text("input [ {")
        await poller.poll_once()
        assert repository.get("b") is None
        assert repository.resolve("a").version == 2  # the broken edit did not take it down
        attempts = repository._failed.copy()
        await poller.poll_once()  # the same broken folder is not tried again
        assert repository._failed == attempts

    run(body, tmp_path, model_control_mode="poll", repository_poll_secs=3600)


def test_poller_stops_cleanly(tmp_path):
    add_model(tmp_path, "a")

    async def body(repository, control, failed):
        poller = RepositoryPoller(repository, interval=0.01)
        poller.start()
        await until(lambda: repository.is_ready("a"), "the poller to load 'a'")
        await poller.stop()
        assert repository.is_ready("a")

    run(body, tmp_path)
