"""``tidal deploy --target kubernetes`` as a user runs it: a real registry in a temporary
TIDAL_HOME holding the built-in example, the real CLI in a subprocess, real kubectl."""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from .conftest import tidal_env

EXAMPLE = Path(__file__).resolve().parents[2] / "src" / "tidal" / "examples" / "model_repository"
K8S_VERSIONS = ("1.27", "1.31", "1.35")  # the unit tests walk every minor version between
KEYS_LINE = re.compile(r"service keys \(shown once[^)]*\): (\{.*\})")


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A TIDAL_HOME where m1:1 is the built-in example, registered as a Multi folder."""
    root = tmp_path_factory.mktemp("k8s")
    models = root / "models"
    shutil.copytree(EXAMPLE, models / "triton")
    done = _tidal(root / "home", "model", "register", "-n", "m1", "-p", str(models),
                  "--framework", "Multi")  # fmt: skip
    assert done.returncode == 0, done.stderr
    return root / "home"


def _tidal(
    home: Path, *args: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess:
    environment = dict(env if env is not None else tidal_env())
    environment["TIDAL_HOME"] = str(home)
    return subprocess.run(
        [sys.executable, "-m", "tidal", *args],
        capture_output=True,
        text=True,
        env=environment,
        timeout=120,
        check=False,
    )


def _validate(objects: list[dict[str, Any]]) -> None:
    for version in K8S_VERSIONS:
        for item in objects:
            kubernetes_validate.validate(item, version, strict=True)


def test_dry_run_prints_valid_objects(home: Path) -> None:
    done = _tidal(home, "deploy", "-n", "svc", "-m", "m1:1", "--target", "kubernetes",
                  "--dry-run", "-o", "yaml")  # fmt: skip
    assert done.returncode == 0, done.stderr
    objects = [o for o in yaml.safe_load_all(done.stdout) if o]
    assert [o["kind"] for o in objects] == [
        "Secret",
        "Deployment",
        "Service",
        "HorizontalPodAutoscaler",
        "PodDisruptionBudget",
    ]
    _validate(objects)
    # The keys are printed once, on stderr; the Secret holds their digests only.
    keys = json.loads(KEYS_LINE.search(done.stderr).group(1))
    stored = json.loads(objects[0]["stringData"]["keys.json"])
    assert stored["primary_key_sha256"] == hashlib.sha256(keys["primaryKey"].encode()).hexdigest()
    assert keys["primaryKey"] not in done.stdout
    env = {
        e["name"]: e["value"]
        for e in objects[1]["spec"]["template"]["spec"]["containers"][0]["env"]
    }
    assert env["TIDAL_MODEL_REPOSITORY"] == "/models/m1/1/models/triton"


def test_dry_run_json_and_compute_type(home: Path, tmp_path: Path) -> None:
    config = tmp_path / "deploymentconfig.json"
    config.write_text(json.dumps({
        "computeType": "kubernetes",
        "containerResourceRequirements": {"cpu": 1.5, "memoryInGB": 2, "gpu": 1},
        "authEnabled": False,
        "autoScaler": {"minReplicas": 2, "maxReplicas": 5, "targetUtilization": 50},
    }))  # fmt: skip
    done = _tidal(home, "deploy", "-n", "gpu-svc", "-m", "m1:1", "--dc", str(config), "--dry-run",
                  "-o", "json", "--namespace", "ml", "--image", "reg/tidal:9")  # fmt: skip
    assert done.returncode == 0, done.stderr
    listing = json.loads(done.stdout)
    objects = listing["items"]
    _validate(objects)
    kinds = {o["kind"]: o for o in objects}
    assert "Secret" not in kinds and "service keys" not in done.stderr
    container = kinds["Deployment"]["spec"]["template"]["spec"]["containers"][0]
    assert container["image"] == "reg/tidal:9"
    assert container["resources"]["limits"] == {
        "cpu": "1500m",
        "memory": "2048Mi",
        "nvidia.com/gpu": 1,
    }
    hpa = kinds["HorizontalPodAutoscaler"]["spec"]
    assert (hpa["minReplicas"], hpa["maxReplicas"]) == (2, 5)
    assert {o["metadata"]["namespace"] for o in objects} == {"ml"}


def test_unknown_model_is_one_line(home: Path) -> None:
    done = _tidal(home, "deploy", "-n", "svc", "-m", "nope:1", "--target", "kubernetes",
                  "--dry-run")  # fmt: skip
    assert done.returncode == 1
    assert done.stderr.startswith("tidal deploy: ") and "Traceback" not in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1


def test_missing_kubectl(home: Path, tmp_path: Path) -> None:
    empty = tmp_path / "bin"
    empty.mkdir()
    env = tidal_env()
    env["PATH"] = str(empty)  # no kubectl anywhere
    env.pop("TIDAL_KUBECTL", None)
    done = _tidal(home, "deploy", "-n", "svc", "-m", "m1:1", "--target", "kubernetes", env=env)
    assert done.returncode == 1
    assert done.stderr.strip().splitlines() == [
        "tidal deploy: 'kubectl' was not found on PATH: install kubectl and point it at a "
        "cluster (or print the objects with --dry-run -o yaml)"
    ]
    for command in ("show", "logs", "delete"):
        done = _tidal(home, "service", command, "-n", "svc", "--target", "kubernetes", env=env)
        assert done.returncode == 1
        assert done.stderr.startswith(f"tidal service {command}: 'kubectl' was not found")


@pytest.mark.skipif(shutil.which("kubectl") is None, reason="kubectl is not installed")
def test_missing_context(home: Path, tmp_path: Path) -> None:
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text("apiVersion: v1\nkind: Config\nclusters: []\ncontexts: []\n")
    env = tidal_env()
    env["KUBECONFIG"] = str(kubeconfig)
    done = _tidal(home, "deploy", "-n", "svc", "-m", "m1:1", "--target", "kubernetes", env=env)
    assert done.returncode == 1
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "kubectl has no current context" in lines[0]
    assert "service keys" not in done.stderr  # no keys made for a deploy that cannot happen
    done = _tidal(home, "service", "show", "-n", "svc", "--target", "kubernetes", env=env)
    assert done.returncode == 1 and "no current context" in done.stderr


def test_deploy_help_lists_the_kubernetes_flags(home: Path) -> None:
    done = _tidal(home, "deploy", "--help")
    assert done.returncode == 0
    for flag in ("--target", "--dry-run", "--image", "--namespace", "--registry-claim", "yaml"):
        assert flag in done.stdout
