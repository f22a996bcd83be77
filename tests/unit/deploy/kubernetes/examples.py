"""Inputs shared by the Kubernetes tests: registry records, specs and fixed key digests."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import kubernetes_validate
import yaml

from tidal.deploy.kubernetes import KubernetesOptions, render
from tidal.deploy.specs import DeploymentSpec, EnvironmentSpec, InferenceSpec
from tidal.registry import ModelVersion
from tidal.security.keys import KeyHashes

GOLDEN = Path(__file__).parent / "golden"
# Regenerate the golden files after an intended change: TIDAL_REGENERATE_GOLDEN=1 pytest ...
REGENERATE = os.environ.get("TIDAL_REGENERATE_GOLDEN") == "1"
KEYS = KeyHashes.of("example-primary-key", "example-secondary-key")
# The Kubernetes minor versions every rendered object is validated against (all bundled by
# kubernetes-validate >= 1.35: the releases supported in 2025-2026).
K8S_VERSIONS = ("1.27", "1.28", "1.29", "1.30", "1.31", "1.32", "1.33", "1.34", "1.35")


def model(name: str = "m1", version: int = 1, *, framework: str = "Multi", root: str = "models",
          is_dir: bool = True) -> ModelVersion:  # fmt: skip
    """A registry record as ``ModelRegistry.get`` returns it."""
    return ModelVersion(
        name=name,
        version=version,
        framework=framework,
        framework_version=None,
        tags={},
        description=None,
        created_at="2026-01-01T00:00:00Z",
        root_name=root,
        is_dir=is_dir,
        file_count=3,
        size_bytes=1000,
    )


def serve_objects() -> list[dict[str, Any]]:
    """The built-in example: one Multi model, defaults everywhere (``tidal deploy -n svc -m
    m1:1 --target kubernetes``)."""
    return render(
        "svc",
        [model()],
        inference=None,
        deployment=DeploymentSpec(compute_type="kubernetes"),
        keys_hashed=KEYS,
    )


def write_app(root: Path) -> Path:
    """A small source folder: an entry script, a helper module in a sub-folder, a binary file."""
    source = root / "src"
    (source / "lib").mkdir(parents=True)
    (source / "score.py").write_text(
        "import json\n\n\ndef init():\n    pass\n\n\ndef run(raw):\n    return json.loads(raw)\n"
    )
    (source / "lib" / "helpers.py").write_text("SCALE = 2\n")
    (source / "lib" / "table.bin").write_bytes(bytes(range(256)))
    (source / "__pycache__").mkdir()
    (source / "__pycache__" / "score.cpython-311.pyc").write_bytes(b"\0skip me")
    return source


def scoring_objects(source: Path) -> list[dict[str, Any]]:
    """An entry script with pip packages, two models, a GPU, fixed replicas, a namespace."""
    inference = InferenceSpec(
        entry_script="score.py",
        source_directory=source,
        environment=EnvironmentSpec(
            name="env", pip_packages=("nltk==3.9.1",), environment_variables={"WORKER_COUNT": "2"}
        ),
    )
    deployment = DeploymentSpec(
        compute_type="kubernetes",
        cpu=2,
        memory_gb=4,
        gpu=1,
        scoring_timeout_ms=5000,
        environment_variables={"EXTRA": "1"},
        replicas=2,
    )
    return render(
        "scorer",
        [model("bert", 3), model("vocab", 1, framework="Custom", root="vocab.txt", is_dir=False)],
        inference=inference,
        deployment=deployment,
        keys_hashed=KEYS,
        options=KubernetesOptions(namespace="ml", registry_claim=None, image="example/tidal:1.2.3"),
    )


def autoscaled_objects() -> list[dict[str, Any]]:
    """No auth, the autoScaler fields, a queue-time metric, a LoadBalancer."""
    deployment = DeploymentSpec(
        compute_type="kubernetes",
        auth_enabled=False,
        min_replicas=2,
        max_replicas=6,
        target_utilization=60,
        autoscale_enabled=True,
    )
    return render(
        "auto",
        [model()],
        inference=None,
        deployment=deployment,
        options=KubernetesOptions(service_type="LoadBalancer", queue_time_target_ms=50),
    )


def load_yaml_stream(text: str) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(text) if doc is not None]


def validate_all(objects: list[dict[str, Any]]) -> None:
    """Raise on the first object a version's strict schema refuses."""
    for version in K8S_VERSIONS:
        for item in objects:
            try:
                kubernetes_validate.validate(item, version, strict=True)
            except kubernetes_validate.ValidationError as exc:
                raise AssertionError(
                    f"{item['kind']}/{item['metadata']['name']} is invalid for Kubernetes "
                    f"{version} at {list(exc.path)}: {exc.message}"
                ) from None
