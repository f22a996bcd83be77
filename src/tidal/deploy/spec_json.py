"""A service's specs as the JSON its host file (``host.json``) keeps between commands."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tidal.deploy.specs import DeploymentSpec, EnvironmentSpec, InferenceSpec

__all__ = [
    "deployment_from_json",
    "deployment_to_json",
    "inference_from_json",
    "inference_to_json",
]


def inference_to_json(entry: str, environment: EnvironmentSpec | None) -> dict[str, Any]:
    """What an update without --ic needs: the entry script within the app and the env."""
    return {
        "entry_script": entry,
        "environment": None
        if environment is None
        else {
            "name": environment.name,
            "pip_packages": list(environment.pip_packages),
            "environment_variables": dict(environment.environment_variables),
        },
    }


def inference_from_json(data: dict[str, Any], app: Path) -> InferenceSpec:
    env = data.get("environment")
    return InferenceSpec(
        entry_script=data["entry_script"],
        source_directory=app,
        environment=None
        if env is None
        else EnvironmentSpec(
            name=env.get("name"),
            pip_packages=tuple(env.get("pip_packages") or ()),
            environment_variables=dict(env.get("environment_variables") or {}),
        ),
    )


def deployment_to_json(spec: DeploymentSpec) -> dict[str, Any]:
    from dataclasses import asdict

    return asdict(spec)


def deployment_from_json(data: dict[str, Any]) -> DeploymentSpec:
    return DeploymentSpec(**data) if data else DeploymentSpec()
