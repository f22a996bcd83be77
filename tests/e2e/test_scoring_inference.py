"""``tidal score --model-repository``: the Azure image-classification sample, done locally.

The inference server runs once (a child of ``tidal score``); the workers' entry script sends
it the image through ``tritonhttpclient`` and returns the top class.
"""

from __future__ import annotations

import io
import os
import signal
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tidal.examples import example_repository

from .score_scripts import IMAGE_SCRIPT, ScoreServer, write_script

Image = pytest.importorskip("PIL.Image")

SERVE_ARGS = [
    "--serve-arg=--http-port=0",
    "--serve-arg=--http-address=127.0.0.1",
    "--serve-arg=--grpc-port=0",
    "--serve-arg=--grpc-address=127.0.0.1",
    "--serve-arg=--metrics-port=0",
]


def _start(tmp_path: Path) -> ScoreServer:
    script = write_script(tmp_path, IMAGE_SCRIPT)
    args = [
        "--entry_script",
        str(script),
        "--worker_count",
        "2",
        "--model-repository",
        str(example_repository()),
        *SERVE_ARGS,
    ]
    return ScoreServer(args).wait_started(timeout=120)


@pytest.fixture(scope="module")
def image_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ScoreServer]:
    server = _start(tmp_path_factory.mktemp("image"))
    yield server
    server.stop()


def _png(color: tuple[int, int, int], size: tuple[int, int] = (320, 240)) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, color).save(buffer, format="PNG")
    return buffer.getvalue()


def _children(pid: int) -> list[int]:
    with open(f"/proc/{pid}/task/{pid}/children") as handle:
        return [int(p) for p in handle.read().split()]


def _cmdline(pid: int) -> str:
    with open(f"/proc/{pid}/cmdline", "rb") as handle:
        return handle.read().replace(b"\0", b" ").decode()


def test_image_bytes_are_classified_through_the_inference_server(
    image_server: ScoreServer,
) -> None:
    assert "the inference server at" in image_server.stderr
    with httpx.Client(base_url=image_server.base_url, timeout=60) as http:
        for color in ((200, 30, 30), (20, 20, 220)):
            response = http.post(
                "/score",
                content=_png(color),
                headers={"Content-Type": "application/octet-stream"},
            )
            assert response.status_code == 200, response.text
            top = response.json()
            assert 0 <= top["index"] < 1000
            assert isinstance(top["label"], str) and top["label"]
            assert isinstance(top["score"], float)
        assert http.get("/score").status_code == 400


def test_bad_image_is_a_500_from_run(image_server: ScoreServer) -> None:
    with httpx.Client(base_url=image_server.base_url, timeout=60) as http:
        response = http.post("/score", content=b"not an image")
    assert response.status_code == 500
    assert response.headers["x-ms-run-function-failed"] == "True"
    assert "UnidentifiedImageError" in response.json()["message"]


@pytest.mark.skipif(not Path("/proc/self/task").is_dir(), reason="needs /proc")
def test_the_service_exits_when_the_inference_server_dies(tmp_path: Path) -> None:
    server = _start(tmp_path)
    try:
        (child,) = [p for p in _children(server.proc.pid) if " serve " in _cmdline(p) + " "]
        os.kill(child, signal.SIGKILL)
        assert server.wait_exited(timeout=30) != 0
        assert "the inference server exited" in server.stderr
    finally:
        server.stop()
