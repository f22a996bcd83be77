"""What a generation runs: its models placed in the service folder (hard links into the
store), its app copied, and the description ``host.json`` gives the host."""

from __future__ import annotations

import shutil
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from tidal.deploy.errors import ServiceError
from tidal.deploy.local.files import APP_DIR, AUTH_KEYS_FILE, MODELS_DIR
from tidal.deploy.model_layout import triton_subpath
from tidal.deploy.spec_json import deployment_to_json, inference_to_json
from tidal.deploy.specs import DeploymentSpec, InferenceSpec
from tidal.registry import ModelRegistry, ModelVersion, RegistryError, parse_model_id

__all__ = ["host_spec", "resolve_models"]


def resolve_models(home: Path, models: Sequence[str]) -> list[ModelVersion]:
    """The registered versions that ``models`` ("name:version") name."""
    if not models:
        raise ServiceError("invalid", "give at least one model (-m NAME:VERSION)")
    registry = ModelRegistry(home)
    try:
        return [registry.get(*parse_model_id(text)) for text in models]
    except RegistryError as exc:
        raise ServiceError(exc.kind, str(exc)) from None


def host_spec(
    home: Path,
    directory: Path,
    name: str,
    models: Sequence[ModelVersion],
    inference: InferenceSpec | None,
    deployment: DeploymentSpec,
    generation: int,
) -> dict[str, Any]:
    """Place the models and the app, and return the host's description of the service."""
    registry = ModelRegistry(home)
    repositories = _place_models(registry, directory, models)
    spec: dict[str, Any] = {
        "name": name,
        "home": str(home),
        "generation": generation,
        "auth_keys_file": str(directory / AUTH_KEYS_FILE) if deployment.auth_enabled else "",
        "deployment": deployment_to_json(deployment),
        "inference": None,
    }
    variables = dict(deployment.environment_variables)
    if inference is None:
        _check_servable(models, repositories)
        spec.update(mode="serve", model_repository=repositories, environment_variables=variables)
        return spec
    spec.update(_score_spec(directory, models, inference, deployment, variables))
    spec["model_repository"] = repositories
    return spec


def _place_models(
    registry: ModelRegistry, directory: Path, models: Sequence[ModelVersion]
) -> list[str]:
    """Hard-link each model under ``azureml-models/<name>/<version>/``; the Triton model
    repositories among them."""
    roots = []
    try:
        for model in models:
            target = directory / MODELS_DIR / model.name / str(model.version)
            root = target / model.root_name
            if not root.exists():
                registry.download(model.name, model.version, target, link=True)
            roots.append(root)
    except RegistryError as exc:
        raise ServiceError(exc.kind, str(exc)) from None
    repositories = []
    for model, root in zip(models, roots, strict=True):
        subpath = triton_subpath(path for path, _, _ in registry.files(model.name, model.version))
        if subpath is not None and root.is_dir():
            repositories.append(str(root / subpath) if subpath else str(root))
    return repositories


def _check_servable(models: Sequence[ModelVersion], repositories: Sequence[str]) -> None:
    """Without an entry script a service serves exactly one Triton model repository."""
    if len(models) != 1:
        raise ServiceError(
            "invalid",
            "without an inference config a service serves exactly one model "
            f"(got {len(models)}); give --ic with an entry script",
        )
    if not repositories:
        raise ServiceError(
            "invalid",
            f"model '{models[0].id}' holds no Triton model repository (a triton/ "
            "folder, or model folders at its top): give an entry script with --ic",
        )


def _score_spec(
    directory: Path,
    models: Sequence[ModelVersion],
    inference: InferenceSpec,
    deployment: DeploymentSpec,
    variables: dict[str, str],
) -> dict[str, Any]:
    """The entry-script part of the description, with a fresh copy of the app."""
    # Each generation gets its own app folder: the running one keeps its files until the
    # host has replaced it (and removes the folders no generation uses).
    app = directory / f"{APP_DIR}-{time.time_ns()}"
    _copy_app(inference, app)
    entry = (
        inference.entry_script
        if inference.source_directory is not None
        else Path(inference.entry_script).name
    )
    environment = inference.environment
    env_vars = dict(environment.environment_variables) if environment else {}
    env_vars.update(variables)
    model_dir = (
        directory / MODELS_DIR / models[0].name / str(models[0].version)
        if len(models) == 1
        else directory / MODELS_DIR
    )
    env_vars.setdefault("AZUREML_MODEL_DIR", str(model_dir))
    return {
        "mode": "score",
        "entry_script": str(app / entry),
        "app_root": str(app),
        "model_dir": str(model_dir),
        "pip_packages": list(environment.pip_packages) if environment else [],
        "environment_variables": env_vars,
        "scoring_timeout_ms": deployment.scoring_timeout_ms,
        "max_concurrent_requests": deployment.max_concurrent_requests,
        "inference": inference_to_json(entry, environment),
    }


def _copy_app(inference: InferenceSpec, app: Path) -> None:
    """Copy the source directory (or just the entry script) to ``app``."""
    if inference.source_directory is not None:
        shutil.copytree(inference.source_directory, app, symlinks=True)
    else:
        app.mkdir(parents=True)
        script = Path(inference.entry_script)
        shutil.copy2(script, app / script.name)
