"""The Python backend with real worker processes, driven directly (no server)."""

from __future__ import annotations

import json
import os
import signal
import textwrap
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from tidal.backends.python.backend import PythonBackend
from tidal.backends.python.config_json import config_from_dict, config_to_dict
from tidal.backends.python.environment import interpreter_for
from tidal.config.model_config import ModelConfig
from tidal.config.pbtxt import ConfigError, parse_config_text
from tidal.config.validation import normalize_config
from tidal.core.datatypes import DataType
from tidal.core.errors import ErrorCode, InferenceError
from tidal.core.types import InferInput, InferRequest, InferResponse, RequestedOutput

CONFIG = """
name: "m"
backend: "python"
max_batch_size: 4
input [ { name: "X" data_type: TYPE_FP32 dims: [ 2 ] } ]
output [ { name: "Y" data_type: TYPE_FP32 dims: [ 2 ] },
         { name: "PID" data_type: TYPE_INT64 dims: [ 1 ] } ]
instance_group [ { count: 2 kind: KIND_CPU } ]
"""

MODEL = """
import os
import time
from pathlib import Path

import numpy as np
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def initialize(self, args):
        self.folder = Path(args["model_repository"])
        if (self.folder / "fail_init").exists():
            raise RuntimeError("initialize refused")

    def execute(self, requests):
        out = []
        for request in requests:
            x = pb_utils.get_input_tensor_by_name(request, "X").as_numpy()
            if x.flat[0] < 0:
                time.sleep(float(-x.flat[0]))
            pid = np.full((x.shape[0], 1), os.getpid(), dtype=np.int64)
            out.append(pb_utils.InferenceResponse(
                [pb_utils.Tensor("Y", x * 2), pb_utils.Tensor("PID", pid)]))
        return out

    def finalize(self):
        (self.folder / f"finalized.{os.getpid()}").write_text("")
"""


def _repo(tmp_path: Path, source: str = MODEL, config: str | None = CONFIG) -> Path:
    version = tmp_path / "m" / "1"
    version.mkdir(parents=True)
    (version / "model.py").write_text(textwrap.dedent(source))
    if config is not None:
        (tmp_path / "m" / "config.pbtxt").write_text(config)
    return version


def _config(text: str = CONFIG) -> ModelConfig:
    return normalize_config(parse_config_text(text, model_name="m"))


def _request(values, request_id: str | None = None, outputs=None) -> InferRequest:
    data = np.asarray(values, dtype=np.float32)
    return InferRequest(
        model_name="m",
        inputs=[InferInput("X", DataType.FP32, data.shape, data)],
        id=request_id,
        outputs=outputs,
    )


@pytest.fixture
def instance(tmp_path: Path):
    version_dir = _repo(tmp_path)
    created = PythonBackend().create_instance(_config(), version_dir, "cpu", 1)
    yield created
    created.close()


def test_a_batch_of_requests_runs_in_the_worker(instance) -> None:
    results = instance.execute([_request([[1, 2]], "a"), _request([[3, 4], [5, 6]], "b")])
    assert all(isinstance(r, InferResponse) for r in results)
    first, second = results
    assert (first.id, first.model_version) == ("a", 1)
    assert [o.name for o in first.outputs] == ["Y", "PID"]
    assert first.outputs[0].data.tolist() == [[2, 4]]
    assert second.outputs[0].data.tolist() == [[6, 8], [10, 12]]
    assert second.outputs[0].datatype is DataType.FP32
    assert int(first.outputs[1].data[0, 0]) == instance.supervisor.pid != os.getpid()


def test_only_requested_outputs_come_back(instance) -> None:
    (result,) = instance.execute([_request([[1, 2]], outputs=[RequestedOutput("PID")])])
    assert [o.name for o in result.outputs] == ["PID"]


def test_instances_are_named_as_triton_names_them(tmp_path: Path) -> None:
    version_dir = _repo(tmp_path)
    backend, config = PythonBackend(), _config()
    instances = [backend.create_instance(config, version_dir, "cpu", 1) for _ in range(2)]
    try:
        names = [i.instance_name for i in instances]
        assert names == ["m_0_0", "m_0_1"]
        args = instances[0].supervisor.spec.args
        assert args["model_instance_kind"] == "CPU"
        assert json.loads(args["model_config"])["max_batch_size"] == 4
    finally:
        for created in instances:
            created.close()


def test_close_runs_finalize(tmp_path: Path) -> None:
    version_dir = _repo(tmp_path)
    created = PythonBackend().create_instance(_config(), version_dir, "cpu", 1)
    pid = created.supervisor.pid
    created.close()
    assert (tmp_path / "m" / f"finalized.{pid}").exists()


def test_a_killed_worker_fails_its_batch_and_is_replaced(instance) -> None:
    old = instance.supervisor.pid
    started = time.monotonic()
    results: list = []
    runner = threading.Thread(
        target=lambda: results.extend(instance.execute([_request([[-5, 0]])]))
    )
    runner.start()
    time.sleep(0.5)  # the request is asleep inside execute
    os.kill(old, signal.SIGKILL)
    runner.join(10)
    (error,) = results
    assert isinstance(error, InferenceError)
    assert error.code is ErrorCode.INTERNAL
    assert f"(pid {old}) was killed by signal 9 (SIGKILL)" in error.message
    assert time.monotonic() - started < 5
    (result,) = instance.execute([_request([[1, 1]])])  # waits for the new worker
    assert isinstance(result, InferResponse)
    assert int(result.outputs[1].data[0, 0]) not in (old, 0)


def test_a_failing_initialize_is_a_load_error(tmp_path: Path) -> None:
    version_dir = _repo(tmp_path)
    (tmp_path / "m" / "fail_init").write_text("")
    with pytest.raises(ConfigError) as caught:
        PythonBackend().create_instance(_config(), version_dir, "cpu", 1)
    message = str(caught.value)
    assert "model 'm' version 1 instance 'm_0_0': failed to load" in message
    assert "RuntimeError: initialize refused" in message


def test_a_model_file_that_does_not_import_is_a_load_error(tmp_path: Path) -> None:
    version_dir = _repo(tmp_path, source="import no_such_module_for_tidal\n")
    with pytest.raises(ConfigError, match="ModuleNotFoundError"):
        PythonBackend().create_instance(_config(), version_dir, "cpu", 1)


def test_bls_without_a_server_answers_with_an_error(tmp_path: Path) -> None:
    source = """
    import numpy as np
    import triton_python_backend_utils as pb_utils

    class TritonPythonModel:
        def execute(self, requests):
            x = pb_utils.get_input_tensor_by_name(requests[0], "X")
            reply = pb_utils.InferenceRequest("other", ["Y"], [x]).exec()
            raise pb_utils.TritonModelException(reply.error().message())
    """
    version_dir = _repo(tmp_path, source=source)
    created = PythonBackend().create_instance(_config(), version_dir, "cpu", 1)
    try:
        (error,) = created.execute([_request([[1, 2]])])
    finally:
        created.close()
    assert isinstance(error, InferenceError)
    assert "no inference server is running" in error.message


def test_auto_complete_runs_the_models_hook(tmp_path: Path) -> None:
    source = """
    class TritonPythonModel:
        @staticmethod
        def auto_complete_config(config):
            config.add_input({"name": "A", "data_type": "TYPE_INT32", "dims": [-1]})
            config.add_output({"name": "B", "data_type": "TYPE_STRING", "dims": [1]})
            config.set_max_batch_size(2)
            return config

        def execute(self, requests):
            return []
    """
    version_dir = _repo(tmp_path, source=source, config=None)
    completed = PythonBackend().auto_complete(ModelConfig(name="m"), version_dir)
    assert completed.name == "m"
    assert completed.backend == "python"
    assert completed.default_model_filename == "model.py"
    assert completed.max_batch_size == 2
    assert [(t.name, t.data_type, t.dims) for t in completed.inputs] == [
        ("A", DataType.INT32, (-1,))
    ]
    assert completed.outputs[0].data_type is DataType.BYTES


def test_auto_complete_errors_name_the_model(tmp_path: Path) -> None:
    source = """
    class TritonPythonModel:
        @staticmethod
        def auto_complete_config(config):
            config.add_input({"name": "A"})
            return config
    """
    version_dir = _repo(tmp_path, source=source, config=None)
    with pytest.raises(
        ConfigError, match=r"model 'm': auto_complete_config failed: .*no 'data_type'"
    ):
        PythonBackend().auto_complete(ModelConfig(name="m"), version_dir)


def test_auto_complete_without_the_hook_starts_no_process(tmp_path: Path) -> None:
    version_dir = _repo(tmp_path, config=None)
    config = PythonBackend().auto_complete(ModelConfig(name="m"), version_dir)
    assert config.inputs == ()
    assert config.backend == "python"


def test_decoupled_models_are_refused(tmp_path: Path) -> None:
    version_dir = _repo(tmp_path)
    config = _config(CONFIG + "model_transaction_policy { decoupled: true }\n")
    with pytest.raises(ConfigError, match="decoupled Python models"):
        PythonBackend().create_instance(config, version_dir, "cpu", 1)


def test_config_json_uses_numbers_for_dims_and_reads_back() -> None:
    config = _config()
    as_dict = config_to_dict(config)
    assert as_dict["input"][0]["dims"] == [2]
    assert as_dict["input"][0]["data_type"] == "TYPE_FP32"
    assert as_dict["max_batch_size"] == 4
    again = config_from_dict(json.loads(json.dumps(as_dict)), "m")
    assert (again.inputs, again.outputs, again.max_batch_size) == (
        config.inputs,
        config.outputs,
        config.max_batch_size,
    )
    with pytest.raises(ConfigError, match="invalid configuration"):
        config_from_dict({"input": [{"data_type": "TYPE_NOPE"}]}, "m")


def test_execution_env_path_is_resolved(tmp_path: Path) -> None:
    env = tmp_path / "m" / "env"
    (env / "bin").mkdir(parents=True)
    (env / "bin" / "python3").write_text("")
    config = ModelConfig(
        name="m", parameters={"EXECUTION_ENV_PATH": "$$TRITON_MODEL_DIRECTORY/env"}
    )
    assert interpreter_for(config, tmp_path / "m") == str(env / "bin" / "python3")
    assert interpreter_for(ModelConfig(name="m"), tmp_path) != str(env / "bin" / "python3")
    missing = ModelConfig(name="m", parameters={"EXECUTION_ENV_PATH": str(tmp_path / "none")})
    with pytest.raises(ConfigError, match="EXECUTION_ENV_PATH"):
        interpreter_for(missing, tmp_path)
