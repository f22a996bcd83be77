"""Triton-style Python models (``model.py``) for the Python-backend tests, written to disk.

Each model is the kind of file a Triton user already has: it imports
``triton_python_backend_utils as pb_utils`` and defines ``TritonPythonModel``.
"""

from __future__ import annotations

import textwrap
from pathlib import Path

from .models import add_sub_onnx, model_config, save_model, tensor_config, write_text

ONNX_ADD_SUB = "onnx_add_sub"  # the ONNX model BLS models call


def _model(repo: Path, name: str, source: str, config: str | None) -> None:
    write_text(repo / name / "1" / "model.py", textwrap.dedent(source))
    if config is not None:
        write_text(repo / name / "config.pbtxt", config)


def _config(name: str, inputs, outputs, max_batch_size: int = 0, extra: str = "") -> str:
    text = model_config(name, inputs, outputs, max_batch_size, extra, platform="")
    return text.replace('platform: ""\n', 'backend: "python"\n')


ADD_SUB = '''
import json

import numpy as np
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    """Triton's add_sub example, with an optional SCALE input."""

    def initialize(self, args):
        self.args = args
        config = json.loads(args["model_config"])
        out0 = pb_utils.get_output_config_by_name(config, "OUTPUT0")
        self.dtype = pb_utils.triton_string_to_numpy(out0["data_type"])

    def execute(self, requests):
        responses = []
        for request in requests:
            in0 = pb_utils.get_input_tensor_by_name(request, "INPUT0").as_numpy()
            in1 = pb_utils.get_input_tensor_by_name(request, "INPUT1").as_numpy()
            scale = pb_utils.get_input_tensor_by_name(request, "SCALE")
            factor = 1 if scale is None else scale.as_numpy().reshape(-1)[0]
            out0 = pb_utils.Tensor("OUTPUT0", ((in0 + in1) * factor).astype(self.dtype))
            out1 = pb_utils.Tensor("OUTPUT1", ((in0 - in1) * factor).astype(self.dtype))
            responses.append(pb_utils.InferenceResponse(output_tensors=[out0, out1]))
        return responses
'''

INSPECT = '''
import json

import numpy as np
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    """Reports what the model sees: its args and each request's id, parameters and outputs."""

    def initialize(self, args):
        self.args = dict(args)
        self.args["model_config"] = json.loads(args["model_config"])

    def execute(self, requests):
        responses = []
        for request in requests:
            data = pb_utils.get_input_tensor_by_name(request, "INPUT0").as_numpy()
            seen = {
                "args": self.args,
                "request_id": request.request_id(),
                "parameters": request.parameters(),
                "requested": sorted(request.requested_output_names()),
                "input_type": type(pb_utils.get_input_tensor_by_name(request, "INPUT0")).__name__,
                "input_dtype": str(data.dtype),
            }
            info = np.array([json.dumps(seen).encode()], dtype=object)
            responses.append(
                pb_utils.InferenceResponse(
                    [pb_utils.Tensor("INFO", info), pb_utils.Tensor("ECHO", data)]
                )
            )
        return responses
'''

STRINGS = '''
import numpy as np
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    """Upper-cases each string; LENGTH gives each one's length in bytes."""

    def execute(self, requests):
        responses = []
        for request in requests:
            text = pb_utils.get_input_tensor_by_name(request, "TEXT").as_numpy()
            if text.dtype != np.object_ or not all(isinstance(v, bytes) for v in text.flat):
                raise TypeError(f"expected an object array of bytes, got {text.dtype}")
            upper = np.array([v.upper() for v in text.flat], dtype=object).reshape(text.shape)
            lengths = np.array([len(v) for v in text.flat], dtype=np.int32).reshape(text.shape)
            responses.append(
                pb_utils.InferenceResponse(
                    [pb_utils.Tensor("UPPER", upper), pb_utils.Tensor("LENGTH", lengths)]
                )
            )
        return responses
'''

AUTO_COMPLETE = '''
import numpy as np
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    """No config.pbtxt: the model declares its inputs, outputs and batching itself."""

    @staticmethod
    def auto_complete_config(auto_complete_model_config):
        config = auto_complete_model_config.as_dict()
        names = {t["name"] for t in config["input"]}
        if "INPUT0" not in names:
            auto_complete_model_config.add_input(
                {"name": "INPUT0", "data_type": "TYPE_FP32", "dims": [3]}
            )
        auto_complete_model_config.add_output(
            {"name": "OUTPUT0", "data_type": "TYPE_FP32", "dims": [3]}
        )
        auto_complete_model_config.set_max_batch_size(4)
        auto_complete_model_config.set_dynamic_batching()
        return auto_complete_model_config

    def execute(self, requests):
        return [
            pb_utils.InferenceResponse(
                [pb_utils.Tensor("OUTPUT0", pb_utils.get_input_tensor_by_name(r, "INPUT0")
                                 .as_numpy() * 10)]
            )
            for r in requests
        ]
'''

FAULTY = '''
import numpy as np
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    """MODE 0 answers; 1 raises; 2 sets an error on the response; 3 sets an INVALID_ARG error;
    4 returns no responses at all."""

    def execute(self, requests):
        responses = []
        for request in requests:
            mode = int(pb_utils.get_input_tensor_by_name(request, "MODE").as_numpy()[0])
            if mode == 1:
                raise ValueError("the model raised on purpose")
            if mode == 2:
                error = pb_utils.TritonError("the response carries an error")
                responses.append(pb_utils.InferenceResponse(error=error))
            elif mode == 3:
                error = pb_utils.TritonError("MODE 3 is refused", pb_utils.TritonError.INVALID_ARG)
                responses.append(pb_utils.InferenceResponse(error=error))
            elif mode == 4:
                return []
            else:
                responses.append(
                    pb_utils.InferenceResponse(
                        [pb_utils.Tensor("OK", np.array([mode], dtype=np.int32))]
                    )
                )
        return responses
'''

PID = '''
import os
import time
from pathlib import Path

import numpy as np
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    """Answers with the worker's PID after sleeping SLEEP_MS; while it sleeps, the file
    <model dir>/executing.<pid> exists, so a test knows the request is inside execute."""

    def initialize(self, args):
        self.folder = Path(args["model_repository"])

    def execute(self, requests):
        responses = []
        for request in requests:
            delay = int(pb_utils.get_input_tensor_by_name(request, "SLEEP_MS").as_numpy()[0])
            marker = self.folder / f"executing.{os.getpid()}"
            if delay:
                marker.write_text("")
            time.sleep(delay / 1000)
            marker.unlink(missing_ok=True)
            pid = np.array([os.getpid()], dtype=np.int64)
            responses.append(pb_utils.InferenceResponse([pb_utils.Tensor("PID", pid)]))
        return responses
'''

SLOW_INIT = '''
import os
import time
from pathlib import Path

import numpy as np
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    """initialize writes <model dir>/init.<pid>, then takes INIT_SECONDS."""

    INIT_SECONDS = 1.5

    def initialize(self, args):
        (Path(args["model_repository"]) / f"init.{os.getpid()}").write_text("")
        time.sleep(self.INIT_SECONDS)

    def execute(self, requests):
        pid = np.array([os.getpid()], dtype=np.int64)
        return [pb_utils.InferenceResponse([pb_utils.Tensor("PID", pid)]) for _ in requests]
'''

BATCH_COUNT = '''
import numpy as np
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    """COUNT tells each request how many requests its execute call received."""

    def execute(self, requests):
        responses = []
        for request in requests:
            rows = pb_utils.get_input_tensor_by_name(request, "INPUT0").as_numpy().shape[0]
            count = np.full((rows, 1), len(requests), dtype=np.int32)
            responses.append(pb_utils.InferenceResponse([pb_utils.Tensor("COUNT", count)]))
        return responses
'''

BLS_SYNC = f'''
import numpy as np
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    """Calls the ONNX add/sub model with exec() and returns its outputs swapped;
    MODEL names another model to call instead (to see BLS errors)."""

    def execute(self, requests):
        responses = []
        for request in requests:
            target = pb_utils.get_input_tensor_by_name(request, "MODEL")
            name = "{ONNX_ADD_SUB}" if target is None else target.as_numpy().flat[0].decode()
            call = pb_utils.InferenceRequest(
                model_name=name,
                requested_output_names=["OUTPUT0", "OUTPUT1"],
                inputs=[
                    pb_utils.get_input_tensor_by_name(request, "INPUT0"),
                    pb_utils.get_input_tensor_by_name(request, "INPUT1"),
                ],
            )
            response = call.exec()
            if response.has_error():
                raise pb_utils.TritonModelException(response.error().message())
            total = pb_utils.get_output_tensor_by_name(response, "OUTPUT0").as_numpy()
            difference = pb_utils.get_output_tensor_by_name(response, "OUTPUT1").as_numpy()
            responses.append(
                pb_utils.InferenceResponse(
                    [pb_utils.Tensor("OUTPUT0", difference), pb_utils.Tensor("OUTPUT1", total)]
                )
            )
        return responses
'''

BLS_ASYNC = f'''
import asyncio

import numpy as np
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    """Sends two async_exec() calls to the ONNX add/sub model at once and adds their sums."""

    async def execute(self, requests):
        responses = []
        for request in requests:
            in0 = pb_utils.get_input_tensor_by_name(request, "INPUT0")
            in1 = pb_utils.get_input_tensor_by_name(request, "INPUT1")
            calls = [
                pb_utils.InferenceRequest(
                    model_name="{ONNX_ADD_SUB}",
                    requested_output_names=["OUTPUT0"],
                    inputs=[in0, in1],
                ).async_exec()
                for _ in range(2)
            ]
            answers = await asyncio.gather(*calls)
            for answer in answers:
                if answer.has_error():
                    raise pb_utils.TritonModelException(answer.error().message())
            total = sum(pb_utils.get_output_tensor_by_name(a, "OUTPUT0").as_numpy()
                        for a in answers)
            responses.append(pb_utils.InferenceResponse([pb_utils.Tensor("OUTPUT0", total)]))
        return responses
'''

BLS_THREADS = f'''
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    """Four exec() calls from four threads at once; OUTPUT0 is the sum of their OUTPUT0s."""

    def initialize(self, args):
        self.pool = ThreadPoolExecutor(4)

    def execute(self, requests):
        responses = []
        for request in requests:
            in1 = pb_utils.get_input_tensor_by_name(request, "INPUT1")

            def call(offset):
                in0 = pb_utils.get_input_tensor_by_name(request, "INPUT0").as_numpy() + offset
                answer = pb_utils.InferenceRequest(
                    model_name="{ONNX_ADD_SUB}",
                    requested_output_names=["OUTPUT0"],
                    inputs=[pb_utils.Tensor("INPUT0", in0), in1],
                ).exec()
                if answer.has_error():
                    raise pb_utils.TritonModelException(answer.error().message())
                return pb_utils.get_output_tensor_by_name(answer, "OUTPUT0").as_numpy()

            total = sum(self.pool.map(call, range(4)))
            responses.append(pb_utils.InferenceResponse([pb_utils.Tensor("OUTPUT0", total)]))
        return responses

    def finalize(self):
        self.pool.shutdown()
'''

ENVIRONMENT = '''
import sys

import numpy as np
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    """PREFIX is the sys.prefix of the interpreter running the model."""

    def execute(self, requests):
        prefix = np.array([sys.prefix.encode()], dtype=object)
        return [pb_utils.InferenceResponse([pb_utils.Tensor("PREFIX", prefix)]) for _ in requests]
'''

IDENTITY = '''
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    """OUTPUT0 = INPUT0, the benchmark's identity model written in Python."""

    def execute(self, requests):
        return [
            pb_utils.InferenceResponse(
                [pb_utils.Tensor("OUTPUT0", pb_utils.get_input_tensor_by_name(r, "INPUT0")
                                 .as_numpy())]
            )
            for r in requests
        ]
'''


def _io(name: str, config_type: str, dims, extra: str = "") -> str:
    return tensor_config(name, config_type, dims, extra)


def build_python_repository(repo: Path, venv: Path | None = None) -> Path:
    """Every Python model the session's tests use, next to the ONNX model BLS calls."""
    repo.mkdir(parents=True, exist_ok=True)
    fp32_pair = [_io("INPUT0", "TYPE_FP32", [4]), _io("INPUT1", "TYPE_FP32", [4])]
    _model(
        repo,
        "py_add_sub",
        ADD_SUB,
        _config(
            "py_add_sub",
            [*fp32_pair, _io("SCALE", "TYPE_FP32", [1], "optional: true")],
            [_io("OUTPUT0", "TYPE_FP32", [4]), _io("OUTPUT1", "TYPE_FP32", [4])],
        ),
    )
    _model(
        repo,
        "py_inspect",
        INSPECT,
        _config(
            "py_inspect",
            [_io("INPUT0", "TYPE_INT32", [2])],
            [_io("INFO", "TYPE_STRING", [1]), _io("ECHO", "TYPE_INT32", [2])],
        ),
    )
    _model(
        repo,
        "py_strings",
        STRINGS,
        _config(
            "py_strings",
            [_io("TEXT", "TYPE_STRING", [-1])],
            [_io("UPPER", "TYPE_STRING", [-1]), _io("LENGTH", "TYPE_INT32", [-1])],
        ),
    )
    _model(repo, "py_auto", AUTO_COMPLETE, None)
    _model(
        repo,
        "py_faulty",
        FAULTY,
        _config("py_faulty", [_io("MODE", "TYPE_INT32", [1])], [_io("OK", "TYPE_INT32", [1])]),
    )
    _model(
        repo,
        "py_pid",
        PID,
        _config("py_pid", [_io("SLEEP_MS", "TYPE_INT32", [1])], [_io("PID", "TYPE_INT64", [1])]),
    )
    _model(
        repo,
        "py_batch",
        BATCH_COUNT,
        _config(
            "py_batch",
            [_io("INPUT0", "TYPE_FP32", [2])],
            [_io("COUNT", "TYPE_INT32", [1])],
            max_batch_size=8,
            extra="dynamic_batching {\n  preferred_batch_size: [ 4 ]\n"
            "  max_queue_delay_microseconds: 2000000\n}",
        ),
    )
    int_pair = [_io("INPUT0", "TYPE_INT32", [16]), _io("INPUT1", "TYPE_INT32", [16])]
    int_outputs = [_io("OUTPUT0", "TYPE_INT32", [16]), _io("OUTPUT1", "TYPE_INT32", [16])]
    save_model(repo / ONNX_ADD_SUB / "1" / "model.onnx", add_sub_onnx("INT32"))
    write_text(
        repo / ONNX_ADD_SUB / "config.pbtxt",
        model_config(ONNX_ADD_SUB, int_pair, int_outputs, max_batch_size=8),
    )
    _model(
        repo,
        "py_bls",
        BLS_SYNC,
        _config(
            "py_bls",
            [*int_pair, _io("MODEL", "TYPE_STRING", [1], "optional: true")],
            int_outputs,
            max_batch_size=8,
        ),
    )
    _model(
        repo,
        "py_bls_async",
        BLS_ASYNC,
        _config("py_bls_async", int_pair, int_outputs[:1], max_batch_size=8),
    )
    _model(
        repo,
        "py_bls_threads",
        BLS_THREADS,
        _config("py_bls_threads", int_pair, int_outputs[:1], max_batch_size=8),
    )
    if venv is not None:
        _model(
            repo,
            "py_env",
            ENVIRONMENT,
            _config(
                "py_env",
                [_io("INPUT0", "TYPE_INT32", [1])],
                [_io("PREFIX", "TYPE_STRING", [1])],
                extra='parameters {\n  key: "EXECUTION_ENV_PATH"\n'
                f'  value: {{ string_value: "{_in_model_dir(repo / "py_env", venv)}" }}\n}}',
            ),
        )
    return repo


def _in_model_dir(model_dir: Path, path: Path) -> str:
    """``path`` as a config names it from the model's folder (Triton's variable for it)."""
    return f"$$TRITON_MODEL_DIRECTORY/{path.relative_to(model_dir).as_posix()}"


def build_slow_init_repository(repo: Path) -> Path:
    """One model whose initialize takes a while, so a test can kill its worker meanwhile."""
    _model(
        repo,
        "py_slow_init",
        SLOW_INIT,
        _config(
            "py_slow_init", [_io("INPUT0", "TYPE_INT32", [1])], [_io("PID", "TYPE_INT64", [1])]
        ),
    )
    return repo


def build_identity_repository(repo: Path, max_batch_size: int = 64) -> Path:
    """The benchmark's identity model ([-1,16] FP32, dynamic batching) written in Python."""
    _model(
        repo,
        "identity_python",
        IDENTITY,
        _config(
            "identity_python",
            [_io("INPUT0", "TYPE_FP32", [16])],
            [_io("OUTPUT0", "TYPE_FP32", [16])],
            max_batch_size=max_batch_size,
            extra="dynamic_batching {\n  max_queue_delay_microseconds: 0\n}",
        ),
    )
    return repo
