"""The Dockerfiles, checked by parsing (no container engine on these machines)."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest
from dockerfile_parse import DockerfileParser

ROOT = Path(__file__).resolve().parents[4]
DOCKERFILES = [ROOT / "Dockerfile", ROOT / "docker" / "Dockerfile.cuda"]


def _parse(path: Path) -> DockerfileParser:
    return DockerfileParser(fileobj=io.BytesIO(path.read_bytes()))


def _final_stage(parser: DockerfileParser) -> list[dict]:
    structure = parser.structure
    last_from = max(i for i, item in enumerate(structure) if item["instruction"] == "FROM")
    return structure[last_from:]


def _args(parser: DockerfileParser) -> dict[str, str]:
    found = {}
    for item in parser.structure:
        if item["instruction"] == "ARG" and "=" in item["value"]:
            key, value = item["value"].split("=", 1)
            found[key.strip()] = value.strip()
    return found


@pytest.mark.parametrize("path", DOCKERFILES, ids=lambda p: p.name)
def test_image_facts(path: Path) -> None:
    parser = _parse(path)
    stage = _final_stage(parser)
    instructions = [item["instruction"] for item in stage]
    users = [item["value"] for item in stage if item["instruction"] == "USER"]
    assert users, "the final stage must switch to a non-root user"
    user = users[-1].split(":")[0]
    assert user not in ("root", "0") and user.isdigit()  # numeric: runAsNonRoot can check it
    exposed = {
        p for item in stage if item["instruction"] == "EXPOSE" for p in item["value"].split()
    }
    assert {"8000", "8001", "8002"} <= exposed
    entrypoint = [item["value"] for item in stage if item["instruction"] == "ENTRYPOINT"]
    assert json.loads(entrypoint[-1]) == ["tidal", "serve"]  # exec form: tidal gets SIGTERM
    assert "HEALTHCHECK" not in instructions  # Kubernetes probes the server itself
    args = _args(parser)
    for base in parser.parent_images:
        resolved = base
        for key, value in args.items():
            resolved = resolved.replace("${" + key + "}", value)
        assert ":" in resolved and not resolved.endswith(":latest"), resolved
    run = " ".join(item["value"] for item in stage if item["instruction"] == "RUN")
    assert "useradd" in run and "10001" in run


def test_cuda_variant_uses_onnxruntime_gpu() -> None:
    parser = _parse(DOCKERFILES[1])
    args = _args(parser)
    assert args["CUDA_IMAGE"].startswith("nvidia/cuda:") and "runtime" in args["CUDA_IMAGE"]
    run = " ".join(i["value"] for i in parser.structure if i["instruction"] == "RUN")
    assert "onnxruntime-gpu" in run
    assert "uninstall -y onnxruntime" in run  # one onnxruntime module, the GPU one


def test_slim_base() -> None:
    args = _args(_parse(DOCKERFILES[0]))
    assert "slim" in args["PYTHON_IMAGE"]


def test_dockerignore_keeps_the_context_small() -> None:
    patterns = {
        line.strip()
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    }
    assert {".git", "tests", "**/__pycache__", ".pytest_cache", ".ruff_cache"} <= patterns
    # what the build copies must not be ignored
    assert not {"src", "pyproject.toml", "README.md"} & patterns
