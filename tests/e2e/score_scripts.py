"""Entry scripts (``score.py``) for the scoring tests, and a runner for ``tidal score``."""

from __future__ import annotations

import re
import subprocess
import textwrap
import threading
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

import pytest

from .conftest import START_TIMEOUT_S, stop_process, tidal_command, tidal_env

SCORE_STARTED_RE = re.compile(r"Started ScoringService at ([0-9.]+):(\d+)")

# An undecorated, synchronous run(): JSON in, a dict out; switches to fail, sleep or die.
JSON_SCRIPT = """
import json, os, time

def init():
    global STATE
    STATE = {
        "model_dir": os.environ["AZUREML_MODEL_DIR"],
        "entry_script": os.environ["AZUREML_ENTRY_SCRIPT"],
        "app_root": os.environ["AML_APP_ROOT"],
        "worker_count": os.environ["WORKER_COUNT"],
    }

def run(raw_data):
    if isinstance(raw_data, dict):  # GET /score: the query string
        return {"query": raw_data}
    data = json.loads(raw_data)
    if data.get("fail"):
        raise ValueError("the input asked to fail")
    if data.get("sleep"):
        time.sleep(data["sleep"])
    if data.get("die"):
        os._exit(9)
    if data.get("text"):
        return data["text"]
    return {"echo": data, "pid": os.getpid(), **STATE}
"""

# async def run() with rawhttp: the raw request in, an AMLResponse out.
RAW_ASYNC_SCRIPT = """
import asyncio
from azureml.contrib.services.aml_request import AMLRequest, rawhttp
from azureml.contrib.services.aml_response import AMLResponse

def init():
    pass

@rawhttp
async def run(request):
    if request.method == "GET":
        return AMLResponse({"args": request.args}, 200, json_str=True)
    body = request.get_data(cache=False)
    if body == b"slow":
        await asyncio.sleep(30)
    if body == b"teapot":
        return AMLResponse("short and stout", 418, {"X-Kind": "teapot"})
    return AMLResponse(body[::-1], 200, {"Content-Type": "application/octet-stream"})
"""

# The image-classification sample of the Azure docs: raw image bytes, Pillow, tritonhttpclient.
IMAGE_SCRIPT = """
import io, os
import numpy as np
from PIL import Image
import tritonhttpclient
from azureml.contrib.services.aml_request import rawhttp
from azureml.contrib.services.aml_response import AMLResponse

def init():
    global client
    url = os.environ.get("INFERENCE_SERVER_URL", "localhost:8000")
    client = tritonhttpclient.InferenceServerClient(url)

@rawhttp
def run(request):
    if request.method != "POST":
        return AMLResponse("POST an image", 400)
    image = Image.open(io.BytesIO(request.get_data())).convert("RGB").resize((224, 224))
    pixels = np.asarray(image, dtype=np.float32).transpose(2, 0, 1) / 255.0
    batch = np.ascontiguousarray(pixels[np.newaxis])
    data = tritonhttpclient.InferInput("data_0", list(batch.shape), "FP32")
    data.set_data_from_numpy(batch)
    output = tritonhttpclient.InferRequestedOutput("fc6_1", class_count=1)
    result = client.infer("densenet_onnx", [data], outputs=[output])
    score, index, label = result.as_numpy("fc6_1")[0][0].decode().split(":", 2)
    return {"label": label, "index": int(index), "score": float(score)}
"""

# A JSON entry script typed with inference_schema: JSON keys become run()'s parameters.
SCHEMA_SCRIPT = """
import numpy as np
from inference_schema.schema_decorators import input_schema, output_schema
from inference_schema.parameter_types.numpy_parameter_type import NumpyParameterType
from inference_schema.parameter_types.standard_py_parameter_type import (
    StandardPythonParameterType,
)

def init():
    pass

@input_schema("data", NumpyParameterType(np.array([[1.0, 2.0, 3.0]], dtype=np.float32)))
@input_schema("scale", StandardPythonParameterType(2.0))
@output_schema(StandardPythonParameterType({"sums": [6.0]}))
def run(data, scale=1.0):
    if scale < 0:
        raise ArithmeticError("negative scale")
    return {"sums": (data.sum(axis=1) * scale).tolist(), "dtype": str(data.dtype)}
"""

INIT_FAILS_SCRIPT = """
def init():
    raise RuntimeError("the model file is missing")

def run(raw_data):
    return raw_data
"""

NO_RUN_SCRIPT = """
def init():
    pass
"""


def write_script(folder: Path, source: str, name: str = "score.py") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_text(textwrap.dedent(source))
    return path


class ScoreServer:
    """One ``python -m tidal score`` process on a free loopback port, stderr drained."""

    def __init__(self, args: Sequence[str], env: Mapping[str, str] | None = None) -> None:
        self.args = ["score", "--host", "127.0.0.1", "--port", "0", *args]
        self.lines: list[str] = []
        self.port: int | None = None
        self._started = threading.Event()
        self._eof = threading.Event()
        self.proc = subprocess.Popen(
            tidal_command(*self.args),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
            errors="replace",
            env={**tidal_env(), **(env or {})},
        )
        self._reader = threading.Thread(target=self._drain, daemon=True)
        self._reader.start()

    def _drain(self) -> None:
        assert self.proc.stderr is not None
        try:
            for line in self.proc.stderr:
                self.lines.append(line)
                match = SCORE_STARTED_RE.search(line)
                if match and self.port is None:
                    self.port = int(match.group(2))
                    self._started.set()
        except (OSError, ValueError):
            pass
        finally:
            self._eof.set()

    @property
    def stderr(self) -> str:
        return "".join(list(self.lines))

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def wait_started(self, timeout: float = START_TIMEOUT_S) -> ScoreServer:
        deadline = time.monotonic() + timeout
        while not self._started.wait(0.05):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                pytest.fail(f"tidal score did not start ({self.proc.returncode}):\n{self.stderr}")
        return self

    def wait_exited(self, timeout: float = START_TIMEOUT_S) -> int:
        try:
            code = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.stop()
            pytest.fail(f"tidal score did not exit:\n{self.stderr}")
        self._eof.wait(5)
        self.stop()  # joins the reader and closes the pipe
        return code

    def stop(self) -> int | None:
        return stop_process(self.proc, self._reader)
