"""``Workspace``: a local handle on ``TIDAL_HOME`` in place of Azure ML's cloud workspace."""

from __future__ import annotations

import json
import os
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tidal.home import tidal_home

if TYPE_CHECKING:
    from tidal.deploy.service import ServiceManager
    from tidal.registry import ModelRegistry

    from .model import Model
    from .webservice import Webservice

__all__ = ["CONFIG_FILE", "Workspace"]

CONFIG_FILE = "config.json"
# Where ``from_config`` looks in each folder, in order (Azure's SDK looks in the same places).
_CONFIG_DIRS = (".azureml", "aml_config", ".")
HOME_KEY = "tidal_home"


class Workspace:
    """Everything the SDK registers and deploys lives under this workspace's home folder.

    ``home`` defaults to ``$TIDAL_HOME`` or ``~/.tidal``. ``name`` is only a label;
    Azure's subscription and resource group have no local meaning.
    """

    def __init__(self, home: str | os.PathLike[str] | None = None, name: str | None = None):
        self.home: Path = tidal_home(home)
        self.name: str = name or "local"

    @classmethod
    def from_config(
        cls, path: str | os.PathLike[str] | None = None, *, _file_name: str | None = None
    ) -> Workspace:
        """The workspace a JSON config file describes.

        ``path`` is the file itself or a folder to start from (default: the current folder);
        from a folder, ``.azureml/config.json``, ``aml_config/config.json`` and ``config.json``
        are looked for there and in each parent. Keys: ``tidal_home`` (relative to the file's
        folder), ``workspace_name``; Azure's ``subscription_id`` / ``resource_group`` are
        accepted and ignored.
        """
        config_path = _find_config(Path(path) if path is not None else Path.cwd(), _file_name)
        try:
            data = json.loads(config_path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise ValueError(f"cannot read workspace config {config_path}: {exc}") from exc
        if not isinstance(data, dict):
            raise ValueError(f"workspace config {config_path} must hold a JSON object")
        home = data.get(HOME_KEY)
        if home is not None:
            if not isinstance(home, str) or not home:
                raise ValueError(f"{config_path}: {HOME_KEY} must be a non-empty string")
            home = config_path.parent / Path(home).expanduser()
        name = data.get("workspace_name")
        return cls(home, name if isinstance(name, str) else None)

    @classmethod
    def get(cls, name: str, **_azure_arguments: Any) -> Workspace:
        """The workspace called ``name`` on the default home (Azure's cloud arguments ignored)."""
        return cls(None, name)

    def write_config(
        self, path: str | os.PathLike[str] | None = None, file_name: str | None = None
    ) -> Path:
        """Write ``.azureml/config.json`` under ``path`` (default: cwd) for ``from_config``."""
        folder = Path(path) if path is not None else Path.cwd()
        target = folder / ".azureml" / (file_name or CONFIG_FILE)
        target.parent.mkdir(parents=True, exist_ok=True)
        body = {HOME_KEY: str(self.home), "workspace_name": self.name}
        target.write_text(json.dumps(body, indent=2) + "\n", encoding="utf-8")
        return target

    @cached_property
    def registry(self) -> ModelRegistry:
        """The model registry under this home."""
        from tidal.registry import ModelRegistry

        return ModelRegistry(self.home)

    @cached_property
    def service_manager(self) -> ServiceManager:
        """The local service manager under this home."""
        from tidal.deploy.service import ServiceManager

        return ServiceManager(self.home)

    @property
    def models(self) -> dict[str, Model]:
        """The latest version of every registered model, by name."""
        from .model import Model

        latest: dict[str, Model] = {}
        for model in Model.list(self):
            if model.name not in latest or model.version > latest[model.name].version:
                latest[model.name] = model
        return latest

    @property
    def webservices(self) -> dict[str, Webservice]:
        """Every service of this home, by name."""
        from .webservice import Webservice

        return {service.name: service for service in Webservice.list(self)}

    def __repr__(self) -> str:
        return f"Workspace(name={self.name!r}, home={str(self.home)!r})"


def _find_config(start: Path, file_name: str | None) -> Path:
    name = file_name or CONFIG_FILE
    if start.is_file():
        return start
    for folder in [start.resolve(), *start.resolve().parents]:
        for sub in _CONFIG_DIRS:
            candidate = folder / sub / name
            if candidate.is_file():
                return candidate.resolve()
    raise FileNotFoundError(
        f"no workspace config {name!r} found in {start} or its parents "
        f"(looked in .azureml/, aml_config/ and the folder itself); "
        f"write one with Workspace(...).write_config()"
    )
