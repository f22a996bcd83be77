"""The inference config and deploymentconfig.json parsers: Azure spellings, errors name fields."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tidal.deploy.specs import (
    DeploymentSpec,
    SpecError,
    deployment_spec_from_json,
    inference_spec_from_json,
    load_deployment_config,
    load_inference_config,
)


@pytest.fixture
def app(tmp_path: Path) -> Path:
    folder = tmp_path / "source"
    folder.mkdir()
    (folder / "score.py").write_text("def init(): pass\ndef run(data): return data\n")
    return folder


def test_inference_config_with_conda_pip_and_variables(app: Path, tmp_path: Path) -> None:
    path = tmp_path / "inference-config.json"
    path.write_text(
        json.dumps(
            {
                "entryScript": "score.py",
                "sourceDirectory": "source",
                "environment": {
                    "name": "env",
                    "python": {
                        "conda_dependencies": {"dependencies": ["python=3.10", {"pip": ["nltk"]}]},
                        "pip": ["numpy"],
                    },
                    "environmentVariables": {"WORKER_COUNT": 2},
                },
            }
        )
    )
    spec = load_inference_config(path)
    assert spec.entry_script == "score.py"
    assert spec.source_directory == app.resolve()
    assert spec.environment is not None
    assert spec.environment.name == "env"
    assert spec.environment.pip_packages == ("numpy", "nltk")
    assert spec.environment.environment_variables == {"WORKER_COUNT": "2"}


def test_camel_case_conda_and_snake_case_fields(app: Path) -> None:
    spec = inference_spec_from_json(
        {
            "entry_script": "score.py",
            "source_directory": str(app),
            "environment": {"python": {"condaDependencies": {"dependencies": [{"pip": ["a"]}]}}},
        }
    )
    assert spec.environment is not None and spec.environment.pip_packages == ("a",)


def test_without_source_directory_the_script_is_found_beside_the_config(app: Path) -> None:
    spec = inference_spec_from_json({"entryScript": "score.py"}, app)
    assert spec.source_directory is None
    assert Path(spec.entry_script) == (app / "score.py").resolve()


@pytest.mark.parametrize(
    ("obj", "field"),
    [
        ({}, "entryScript"),
        ({"entryScript": 3}, "entryScript"),
        ({"entryScript": "missing.py", "sourceDirectory": "."}, "entryScript"),
        ({"entryScript": "score.py", "sourceDirectory": "nowhere"}, "sourceDirectory"),
        ({"entryScript": "score.py", "environment": []}, "environment"),
        ({"entryScript": "score.py", "environment": {"python": {"pip": "x"}}}, "python.pip"),
        (
            {"entryScript": "score.py", "environment": {"environmentVariables": {"A": [1]}}},
            "environmentVariables.A",
        ),
        (
            {
                "entryScript": "score.py",
                "environment": {"python": {"conda_dependencies": {"dependencies": 3}}},
            },
            "conda_dependencies",
        ),
    ],
)
def test_inference_errors_name_the_field(app: Path, obj: dict, field: str) -> None:
    with pytest.raises(SpecError, match=field.replace(".", r"\.")):
        inference_spec_from_json(obj, app)


def test_deployment_config_fields_and_unknown_warnings() -> None:
    spec, warnings = deployment_spec_from_json(
        {
            "computeType": "Local",
            "port": 6789,
            "containerResourceRequirements": {"cpu": 0.5, "memoryInGB": 1, "gpu": 0, "x": 1},
            "authEnabled": False,
            "scoringTimeoutMs": 5000,
            "maxConcurrentRequestsPerContainer": 4,
            "environmentVariables": {"WORKER_COUNT": "3"},
            "autoScaler": {"autoscaleEnabled": True, "minReplicas": 1, "maxReplicas": 3,
                           "targetUtilization": 70},
            "numReplicas": 2,
            "appInsightsEnabled": True,
        }
    )  # fmt: skip
    assert spec == DeploymentSpec(
        compute_type="local",
        port=6789,
        cpu=0.5,
        memory_gb=1.0,
        gpu=0,
        auth_enabled=False,
        scoring_timeout_ms=5000,
        max_concurrent_requests=4,
        environment_variables={"WORKER_COUNT": "3"},
        min_replicas=1,
        max_replicas=3,
        target_utilization=70,
        replicas=2,
        autoscale_enabled=True,
    )
    assert len(warnings) == 2
    assert any("appInsightsEnabled" in w for w in warnings)
    assert any("containerResourceRequirements.x" in w for w in warnings)


def test_defaults() -> None:
    spec, warnings = deployment_spec_from_json({})
    assert spec == DeploymentSpec() and warnings == []
    assert spec.auth_enabled is True and spec.compute_type == "local"


@pytest.mark.parametrize(
    ("obj", "field"),
    [
        ([], "deployment config"),
        ({"computeType": "aks"}, "computeType"),
        ({"port": 0}, "port"),
        ({"port": "80"}, "port"),
        ({"authEnabled": "yes"}, "authEnabled"),
        ({"scoringTimeoutMs": -1}, "scoringTimeoutMs"),
        ({"maxConcurrentRequestsPerContainer": 0}, "maxConcurrentRequestsPerContainer"),
        ({"containerResourceRequirements": {"cpu": -1}}, "containerResourceRequirements.cpu"),
        ({"containerResourceRequirements": {"gpu": 1.5}}, "containerResourceRequirements.gpu"),
        ({"environmentVariables": ["A=1"]}, "environmentVariables"),
        ({"autoScaler": {"minReplicas": 3, "maxReplicas": 1}}, "minReplicas"),
        ({"autoScaler": {"targetUtilization": 101}}, "targetUtilization"),
    ],
)
def test_deployment_errors_name_the_field(obj: object, field: str) -> None:
    with pytest.raises(SpecError, match=field):
        deployment_spec_from_json(obj)


def test_unreadable_files(tmp_path: Path) -> None:
    with pytest.raises(SpecError, match="cannot read"):
        load_deployment_config(tmp_path / "missing.json")
    bad = tmp_path / "bad.json"
    bad.write_text("{")
    with pytest.raises(SpecError, match="not valid JSON"):
        load_inference_config(bad)
