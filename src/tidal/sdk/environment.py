"""``Environment`` and ``CondaDependencies``: the Python packages and variables of a service.

Only what a local service can honour is kept: the pip packages (installed into a cached
virtual environment by ``tidal.deploy.environment``) and the environment variables. Conda-only
entries such as ``python=3.10`` are kept in the dependencies object but not installed.
"""

from __future__ import annotations

import copy
import json
import logging
import os
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tidal.deploy.environment import pip_packages_from_conda, resolve_local_paths

if TYPE_CHECKING:
    from tidal.deploy.specs import EnvironmentSpec

    from .workspace import Workspace

__all__ = ["CondaDependencies", "Environment", "PythonSection"]

logger = logging.getLogger("tidal.sdk")

# Azure's curated environments hold its own serving stack; tidal brings its own, so they
# resolve to an environment with no extra packages.
CURATED_PREFIX = "AzureML-"
_ENVIRONMENTS_DIR = "environments"
_ENV_NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,254}")
_NAME_RE = re.compile(r"^\s*([A-Za-z0-9][A-Za-z0-9._-]*)")


def _canonical_name(requirement: str) -> str | None:
    # PEP 503: names compare case-insensitively with runs of -, _ and . equal.
    if requirement.startswith("-") or "/" in requirement:
        return None
    match = _NAME_RE.match(requirement)
    return re.sub(r"[-_.]+", "-", match.group(1)).lower() if match else None


class CondaDependencies:
    """A conda dependencies object (``{"dependencies": [..., {"pip": [...]}]}``)."""

    def __init__(
        self,
        conda_dependencies_file_path: str | os.PathLike[str] | None = None,
        _underlying_structure: dict[str, Any] | None = None,
    ) -> None:
        if conda_dependencies_file_path is not None:
            _underlying_structure = _read_conda_file(Path(conda_dependencies_file_path))
        structure = copy.deepcopy(_underlying_structure) if _underlying_structure else {}
        structure.setdefault("dependencies", [])
        pip_packages_from_conda(structure)  # validates the shape, naming the bad field
        self._structure: dict[str, Any] = structure

    @staticmethod
    def create(
        pip_packages: list[str] | None = None,
        conda_packages: list[str] | None = None,
        python_version: str | None = None,
        **_azure_arguments: Any,
    ) -> CondaDependencies:
        """A dependencies object holding these packages."""
        deps = CondaDependencies()
        if python_version:
            deps.set_python_version(python_version)
        for package in conda_packages or ():
            deps.add_conda_package(package)
        for package in pip_packages or ():
            deps.add_pip_package(package)
        return deps

    @property
    def pip_packages(self) -> tuple[str, ...]:
        """The pip entries, in order."""
        return pip_packages_from_conda(self._structure)

    @property
    def conda_packages(self) -> tuple[str, ...]:
        """The conda entries (kept, not installed: a local service runs on this Python)."""
        return tuple(d for d in self._structure["dependencies"] if isinstance(d, str))

    def add_pip_package(self, pip_package: str) -> None:
        """Add a pip requirement, replacing an entry for the same package name."""
        pip = self._pip_list()
        self.remove_pip_package(pip_package)
        pip.append(pip_package.strip())

    def remove_pip_package(self, pip_package: str) -> None:
        """Remove the entries for this package name (or this exact entry)."""
        pip = self._pip_list()
        name = _canonical_name(pip_package)
        pip[:] = [
            p
            for p in pip
            if p != pip_package.strip() and (name is None or _canonical_name(p) != name)
        ]

    def add_conda_package(self, conda_package: str) -> None:
        """Add a conda entry (recorded; a local service does not install conda packages)."""
        deps = self._structure["dependencies"]
        if conda_package not in deps:
            deps.insert(len(self.conda_packages), conda_package)

    def set_python_version(self, version: str) -> None:
        """Record ``python=VERSION`` (informational: services run on tidal's Python)."""
        deps = self._structure["dependencies"]
        deps[:] = [d for d in deps if not (isinstance(d, str) and d.startswith("python"))]
        deps.insert(0, f"python={version}")

    def as_dict(self) -> dict[str, Any]:
        """A copy of the conda dependencies object."""
        return copy.deepcopy(self._structure)

    def _pip_list(self) -> list[str]:
        deps = self._structure["dependencies"]
        for item in deps:
            if isinstance(item, dict) and "pip" in item:
                return item["pip"]
        section: dict[str, list[str]] = {"pip": []}
        deps.append(section)
        return section["pip"]

    def __repr__(self) -> str:
        return f"CondaDependencies({self._structure!r})"


class PythonSection:
    """``Environment.python``: its ``conda_dependencies``."""

    def __init__(self) -> None:
        self.conda_dependencies = CondaDependencies()
        # Azure's flag for "the packages are already there"; a local service then adds none.
        self.user_managed_dependencies = False
        self.interpreter_path: str | None = None


class Environment:
    """The Python packages and environment variables a service's ``/score`` workers run with."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.version: str | None = None
        self.python = PythonSection()
        self.environment_variables: dict[str, str] = {}

    @staticmethod
    def get(workspace: Workspace, name: str, version: str | None = None) -> Environment:
        """A registered environment, or for a curated ``AzureML-*`` name an empty one."""
        path = _env_file(workspace, name)
        if path.is_file():
            env = Environment._from_json(json.loads(path.read_text(encoding="utf-8")))
            if version is not None and env.version != str(version):
                raise ValueError(
                    f"environment {name!r} version {version} not found (latest: {env.version})"
                )
            return env
        if name.startswith(CURATED_PREFIX):
            logger.info(
                "Curated environment %r: tidal serves with its own stack, so it adds no "
                "packages; add yours with env.python.conda_dependencies.add_pip_package()",
                name,
            )
            return Environment(name)
        raise ValueError(f"environment {name!r} is not registered in {workspace.home}")

    @staticmethod
    def list(workspace: Workspace) -> dict[str, Environment]:
        """The registered environments, by name."""
        folder = _environments_dir(workspace)
        found = sorted(folder.glob("*.json")) if folder.is_dir() else []
        return {
            env.name: env
            for env in (Environment._from_json(json.loads(p.read_text("utf-8"))) for p in found)
        }

    @staticmethod
    def from_pip_requirements(
        name: str, file_path: str | os.PathLike[str], pip_version: str | None = None
    ) -> Environment:
        """An environment holding the lines of a pip requirements file."""
        env = Environment(name)
        for line in Path(file_path).read_text(encoding="utf-8").splitlines():
            line = line.split(" #", 1)[0].strip()
            if line and not line.startswith("#"):
                env.python.conda_dependencies.add_pip_package(line)
        return env

    @staticmethod
    def from_conda_specification(name: str, file_path: str | os.PathLike[str]) -> Environment:
        """An environment from a conda file (YAML or JSON); only its pip entries install."""
        env = Environment(name)
        env.python.conda_dependencies = CondaDependencies(file_path)
        return env

    def clone(self, new_name: str) -> Environment:
        """A deep copy under a new name (unregistered, no version)."""
        twin = copy.deepcopy(self)
        twin.name = new_name
        twin.version = None
        return twin

    def register(self, workspace: Workspace) -> Environment:
        """Store this environment in the workspace; the version counts up from 1."""
        path = _env_file(workspace, self.name)
        path.parent.mkdir(parents=True, exist_ok=True)
        previous = json.loads(path.read_text("utf-8")).get("version") if path.is_file() else 0
        self.version = str(int(previous or 0) + 1)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(self._to_json(), indent=2), encoding="utf-8")
        tmp.replace(path)
        return self

    def to_spec(self) -> EnvironmentSpec:
        """The deployment layer's ``EnvironmentSpec`` for this environment."""
        from tidal.deploy.specs import EnvironmentSpec

        pip = (
            ()
            if self.python.user_managed_dependencies
            else self.python.conda_dependencies.pip_packages
        )
        return EnvironmentSpec(
            name=self.name,
            # Relative wheel paths mean the caller's folder; the service builds elsewhere.
            pip_packages=resolve_local_paths(pip),
            environment_variables={str(k): str(v) for k, v in self.environment_variables.items()},
        )

    def _to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "version": self.version,
            "python": {
                "userManagedDependencies": self.python.user_managed_dependencies,
                "condaDependencies": self.python.conda_dependencies.as_dict(),
            },
            "environmentVariables": dict(self.environment_variables),
        }

    @staticmethod
    def _from_json(data: dict[str, Any]) -> Environment:
        env = Environment(data["name"])
        env.version = data.get("version")
        python = data.get("python") or {}
        env.python.user_managed_dependencies = bool(python.get("userManagedDependencies"))
        env.python.conda_dependencies = CondaDependencies(
            _underlying_structure=python.get("condaDependencies") or {}
        )
        env.environment_variables = dict(data.get("environmentVariables") or {})
        return env

    def __repr__(self) -> str:
        return (
            f"Environment(name={self.name!r}, version={self.version!r}, "
            f"pip={list(self.python.conda_dependencies.pip_packages)!r}, "
            f"environment_variables={self.environment_variables!r})"
        )


def _environments_dir(workspace: Workspace) -> Path:
    return workspace.home / _ENVIRONMENTS_DIR


def _env_file(workspace: Workspace, name: str) -> Path:
    # The name becomes a file name: refuse anything that could leave the folder.
    if not isinstance(name, str) or not _ENV_NAME_RE.fullmatch(name):
        raise ValueError(
            f"invalid environment name {name!r}: use letters, numbers, '-', '_' and '.' "
            "(starting with a letter or number)"
        )
    return _environments_dir(workspace) / f"{name}.json"


def _read_conda_file(path: Path) -> dict[str, Any]:
    text = path.read_text(encoding="utf-8")
    try:
        data = json.loads(text)
    except ValueError:
        try:
            import yaml
        except ImportError as exc:  # pragma: no cover - PyYAML is almost always present
            raise ValueError(f"{path}: reading a YAML conda file needs PyYAML") from exc
        data = yaml.safe_load(text)
    if not isinstance(data, dict):
        raise ValueError(f"{path}: a conda file must hold a mapping with 'dependencies'")
    return data
