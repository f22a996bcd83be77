"""The Azure-style deployment files: ``inference-config.json`` and ``deploymentconfig.json``.

Both are parsed once into frozen dataclasses. Every validation error is a ``SpecError`` whose
message names the field (``containerResourceRequirements.cpu must be a positive number``).
Unknown ``deploymentconfig.json`` fields are ignored with a warning, as the Azure CLI does.
"""

from __future__ import annotations

import json
import math
from collections.abc import Container, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = [
    "COMPUTE_TYPES",
    "DeploymentSpec",
    "EnvironmentSpec",
    "InferenceSpec",
    "SpecError",
    "deployment_spec_from_json",
    "inference_spec_from_json",
    "load_deployment_config",
    "load_inference_config",
]

COMPUTE_TYPES = ("local", "kubernetes")


class SpecError(ValueError):
    """A deployment file is unreadable or a field in it is wrong; the message names the field."""


@dataclass(frozen=True)
class EnvironmentSpec:
    """The Python environment of the ``/score`` workers: extra pip packages and variables."""

    name: str | None = None
    pip_packages: tuple[str, ...] = ()
    environment_variables: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class InferenceSpec:
    """An entry script (relative to ``source_directory`` when one is given) and its environment."""

    entry_script: str
    source_directory: Path | None = None
    environment: EnvironmentSpec | None = None


@dataclass(frozen=True)
class DeploymentSpec:
    """Where and how a service runs; ``None`` means "not given, use the default"."""

    compute_type: str = "local"
    port: int | None = None
    cpu: float | None = None
    memory_gb: float | None = None
    gpu: int = 0
    auth_enabled: bool = True
    scoring_timeout_ms: int | None = None
    max_concurrent_requests: int | None = None
    environment_variables: dict[str, str] = field(default_factory=dict)
    min_replicas: int | None = None
    max_replicas: int | None = None
    target_utilization: int | None = None
    replicas: int | None = None
    autoscale_enabled: bool | None = None


# -- inference config -------------------------------------------------------------------------


def load_inference_config(path: str | Path) -> InferenceSpec:
    """Read an inference config file; a relative ``sourceDirectory`` is relative to the file."""
    file = Path(path).expanduser()
    return inference_spec_from_json(_read_json(file), file.resolve().parent)


def inference_spec_from_json(obj: Any, base_dir: str | Path | None = None) -> InferenceSpec:
    """An ``InferenceSpec`` from the parsed JSON (Azure CLI spellings; snake_case accepted)."""
    if not isinstance(obj, Mapping):
        raise SpecError("the inference config must be a JSON object")
    base = Path(base_dir) if base_dir is not None else Path.cwd()
    entry = _pick(obj, "entryScript", "entry_script")
    if not isinstance(entry, str) or not entry.strip():
        raise SpecError("entryScript is required and must be a non-empty string")
    source_text = _pick(obj, "sourceDirectory", "source_directory")
    source: Path | None = None
    if source_text is not None:
        if not isinstance(source_text, str) or not source_text.strip():
            raise SpecError("sourceDirectory must be a non-empty string")
        source = (base / Path(source_text).expanduser()).resolve()
        if not source.is_dir():
            raise SpecError(f"sourceDirectory '{source_text}' is not a folder ({source})")
    script_path = (source or base) / entry
    if not script_path.is_file():
        where = "sourceDirectory" if source is not None else "the config's folder"
        raise SpecError(f"entryScript '{entry}' does not exist in {where} ({script_path})")
    environment = _environment(obj.get("environment"), "environment")
    if source is None:  # no app folder: the script alone, found beside the config
        entry = str(script_path.resolve())
    return InferenceSpec(entry_script=entry, source_directory=source, environment=environment)


def _environment(obj: Any, where: str) -> EnvironmentSpec | None:
    if obj is None:
        return None
    if not isinstance(obj, Mapping):
        raise SpecError(f"{where} must be a JSON object")
    name = obj.get("name")
    if name is not None and not isinstance(name, str):
        raise SpecError(f"{where}.name must be a string")
    packages: list[str] = []
    python = obj.get("python")
    if python is not None:
        if not isinstance(python, Mapping):
            raise SpecError(f"{where}.python must be a JSON object")
        packages += _strings(python.get("pip"), f"{where}.python.pip")
        for spelling in ("conda_dependencies", "condaDependencies"):
            if python.get(spelling) is not None:
                packages += _conda_pip(python[spelling], f"{where}.python.{spelling}")
    packages += _strings(obj.get("pip"), f"{where}.pip")
    variables = _variables(
        _pick(obj, "environmentVariables", "environment_variables"),
        f"{where}.environmentVariables",
    )
    unique = tuple(dict.fromkeys(p.strip() for p in packages if p.strip()))
    return EnvironmentSpec(name=name, pip_packages=unique, environment_variables=variables)


def _conda_pip(obj: Any, where: str) -> list[str]:
    try:
        from tidal.deploy.environment import pip_packages_from_conda
    except ImportError:  # pragma: no cover - the environment module ships with tidal
        raise SpecError(f"{where} is not supported in this build") from None
    try:
        return list(pip_packages_from_conda(obj))
    except ValueError as exc:
        raise SpecError(f"{where}: {exc}") from None


# -- deployment config ------------------------------------------------------------------------

_KNOWN_FIELDS = frozenset(
    {
        "computeType",
        "port",
        "containerResourceRequirements",
        "authEnabled",
        "scoringTimeoutMs",
        "maxConcurrentRequestsPerContainer",
        "environmentVariables",
        "autoScaler",
        "numReplicas",
    }
)
_RESOURCE_FIELDS = frozenset({"cpu", "memoryInGB", "gpu"})
_AUTOSCALER_FIELDS = frozenset(
    {
        "autoscaleEnabled",
        "minReplicas",
        "maxReplicas",
        "targetUtilization",
        "refreshPeriodInSeconds",
    }
)


def load_deployment_config(path: str | Path) -> tuple[DeploymentSpec, list[str]]:
    """Read a deployment config file: the spec and warnings about ignored fields."""
    return deployment_spec_from_json(_read_json(Path(path).expanduser()))


def _ignored(
    obj: Mapping[str, Any], known: Container[str], prefix: str, what: str = "was ignored"
) -> list[str]:
    """One warning per field of ``obj`` that tidal does not know."""
    return [f"deploymentconfig field '{prefix}{name}' {what}" for name in obj if name not in known]


def deployment_spec_from_json(obj: Any) -> tuple[DeploymentSpec, list[str]]:
    """A ``DeploymentSpec`` from the parsed JSON, and one warning per unknown field."""
    if not isinstance(obj, Mapping):
        raise SpecError("the deployment config must be a JSON object")
    warnings = _ignored(obj, _KNOWN_FIELDS, "", "is not used by tidal and was ignored")
    compute = obj.get("computeType", "local")
    if not isinstance(compute, str) or compute.lower() not in COMPUTE_TYPES:
        raise SpecError(f"computeType must be one of {', '.join(COMPUTE_TYPES)}, got {compute!r}")
    resources = obj.get("containerResourceRequirements") or {}
    if not isinstance(resources, Mapping):
        raise SpecError("containerResourceRequirements must be a JSON object")
    warnings += _ignored(resources, _RESOURCE_FIELDS, "containerResourceRequirements.")
    scaler = obj.get("autoScaler") or {}
    if not isinstance(scaler, Mapping):
        raise SpecError("autoScaler must be a JSON object")
    warnings += _ignored(scaler, _AUTOSCALER_FIELDS, "autoScaler.")
    auth = obj.get("authEnabled", True)
    if not isinstance(auth, bool):
        raise SpecError("authEnabled must be true or false")
    autoscale = scaler.get("autoscaleEnabled")
    if autoscale is not None and not isinstance(autoscale, bool):
        raise SpecError("autoScaler.autoscaleEnabled must be true or false")
    spec = DeploymentSpec(
        compute_type=compute.lower(),
        port=_int(obj.get("port"), "port", 1, 65535),
        cpu=_number(resources.get("cpu"), "containerResourceRequirements.cpu"),
        memory_gb=_number(resources.get("memoryInGB"), "containerResourceRequirements.memoryInGB"),
        gpu=_int(resources.get("gpu"), "containerResourceRequirements.gpu", 0) or 0,
        auth_enabled=auth,
        scoring_timeout_ms=_int(obj.get("scoringTimeoutMs"), "scoringTimeoutMs", 1),
        max_concurrent_requests=_int(
            obj.get("maxConcurrentRequestsPerContainer"), "maxConcurrentRequestsPerContainer", 1
        ),
        environment_variables=_variables(obj.get("environmentVariables"), "environmentVariables"),
        min_replicas=_int(scaler.get("minReplicas"), "autoScaler.minReplicas", 1),
        max_replicas=_int(scaler.get("maxReplicas"), "autoScaler.maxReplicas", 1),
        target_utilization=_int(
            scaler.get("targetUtilization"), "autoScaler.targetUtilization", 1, 100
        ),
        replicas=_int(obj.get("numReplicas"), "numReplicas", 1),
        autoscale_enabled=autoscale,
    )
    if (
        spec.min_replicas is not None
        and spec.max_replicas is not None
        and spec.min_replicas > spec.max_replicas
    ):
        raise SpecError("autoScaler.minReplicas must not exceed autoScaler.maxReplicas")
    return spec, warnings


# -- helpers ----------------------------------------------------------------------------------


def _read_json(path: Path) -> Any:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise SpecError(f"cannot read '{path}': {exc.strerror or exc}") from None
    try:
        return json.loads(text)
    except ValueError as exc:
        raise SpecError(f"'{path}' is not valid JSON: {exc}") from None


def _pick(obj: Mapping[str, Any], *names: str) -> Any:
    for name in names:
        if obj.get(name) is not None:
            return obj[name]
    return None


def _strings(obj: Any, where: str) -> list[str]:
    if obj is None:
        return []
    if isinstance(obj, str) or not isinstance(obj, list):
        raise SpecError(f"{where} must be a list of strings")
    for index, item in enumerate(obj):
        if not isinstance(item, str):
            raise SpecError(f"{where}[{index}] must be a string")
    return list(obj)


def _variables(obj: Any, where: str) -> dict[str, str]:
    if obj is None:
        return {}
    if not isinstance(obj, Mapping):
        raise SpecError(f"{where} must be a JSON object of names to values")
    variables: dict[str, str] = {}
    for name, value in obj.items():
        if not name or "=" in name or "\0" in name:
            raise SpecError(f"{where}: {name!r} is not a valid variable name")
        if isinstance(value, bool) or not isinstance(value, (str, int, float)):
            raise SpecError(f"{where}.{name} must be a string or a number")
        variables[name] = str(value)
    return variables


def _int(value: Any, where: str, low: int, high: int | None = None) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise SpecError(f"{where} must be an integer, got {value!r}")
    if value < low or (high is not None and value > high):
        bound = f"between {low} and {high}" if high is not None else f"at least {low}"
        raise SpecError(f"{where} must be {bound}, got {value}")
    return value


def _number(value: Any, where: str) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise SpecError(f"{where} must be a number, got {value!r}")
    if value <= 0:
        raise SpecError(f"{where} must be positive, got {value}")
    return float(value)
