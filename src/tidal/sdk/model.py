"""``Model``: registered model versions, as Azure ML's v1 ``Model`` class presents them."""

from __future__ import annotations

import os
import shutil
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ._errors import WebserviceException, translated

if TYPE_CHECKING:
    from tidal.registry import ModelVersion

    from .inference_config import InferenceConfig
    from .webservice import LocalWebserviceDeploymentConfiguration, Webservice
    from .workspace import Workspace

__all__ = ["Model"]

TagFilter = Sequence[str | Sequence[str]] | Mapping[str, str | None]


class _Framework:
    """Azure's ``Model.Framework`` names."""

    CUSTOM = "Custom"
    MULTI = "Multi"
    ONNX = "Onnx"
    PYTORCH = "PyTorch"
    SCIKITLEARN = "ScikitLearn"
    TENSORFLOW = "TensorFlow"
    TFKERAS = "TfKeras"


class Model:
    """One registered version of a model in a workspace.

    ``Model(ws, "name")`` is the latest version, ``Model(ws, "name", version=2)`` or
    ``Model(ws, id="name:2")`` a given one; a missing model raises ``WebserviceException``.
    """

    Framework = _Framework

    def __init__(
        self,
        workspace: Workspace,
        name: str | None = None,
        id: str | None = None,
        tags: TagFilter | None = None,
        version: int | None = None,
        model_framework: str | None = None,
        *,
        _record: ModelVersion | None = None,
    ) -> None:
        self.workspace = workspace
        if _record is None:
            _record = _lookup(workspace, name, id, version, tags, model_framework)
        self._record = _record

    # -- class-level calls ----------------------------------------------------------------

    @staticmethod
    def register(
        workspace: Workspace,
        model_path: str | os.PathLike[str],
        model_name: str,
        tags: Mapping[str, Any] | None = None,
        properties: Mapping[str, Any] | None = None,
        description: str | None = None,
        model_framework: str | None = None,
        model_framework_version: str | None = None,
    ) -> Model:
        """Copy the file or folder at ``model_path`` in as the next version of ``model_name``.

        ``model_framework`` defaults to ``Custom`` as in Azure; a Triton ``triton/`` folder
        deployed without an entry script needs ``Model.Framework.MULTI``. ``properties`` are
        stored as tags (tidal keeps one key/value map per version).
        """
        merged = {str(k): str(v) for k, v in {**(properties or {}), **(tags or {})}.items()}
        with translated():
            record = workspace.registry.register(
                model_name,
                Path(model_path),
                framework=model_framework or _Framework.CUSTOM,
                framework_version=model_framework_version,
                tags=merged,
                description=description,
            )
        return Model(workspace, _record=record)

    @staticmethod
    def list(
        workspace: Workspace,
        name: str | None = None,
        tags: TagFilter | None = None,
        latest: bool = False,
        model_framework: str | None = None,
    ) -> list[Model]:
        """The registered versions (newest first per name), filtered like Azure's ``list``."""
        with translated():
            records = workspace.registry.list(name=name, tags=_tag_filter(tags))
        if model_framework is not None:
            records = [r for r in records if r.framework.lower() == model_framework.lower()]
        if latest:
            newest: dict[str, ModelVersion] = {}
            for record in records:
                if record.name not in newest or record.version > newest[record.name].version:
                    newest[record.name] = record
            records = list(newest.values())
        return [Model(workspace, _record=r) for r in records]

    @staticmethod
    def deploy(
        workspace: Workspace,
        name: str,
        models: Sequence[Model],
        inference_config: InferenceConfig | None = None,
        deployment_config: LocalWebserviceDeploymentConfiguration | None = None,
        deployment_target: Any = None,
        overwrite: bool = False,
        show_output: bool = False,
    ) -> Webservice:
        """Start the service ``name`` serving ``models``; returns at once (Azure's behaviour):
        call ``wait_for_deployment()`` to block until it is Healthy or Failed.
        """
        from .webservice import Webservice, deploy_service

        if deployment_target is not None:
            raise WebserviceException(
                "deployment_target is for cloud compute; local services take a "
                "LocalWebservice.deploy_configuration()",
                "invalid",
            )
        deploy_service(
            workspace,
            name,
            models,
            inference_config=inference_config,
            deployment_config=deployment_config,
            overwrite=overwrite,
            show_output=show_output,
        )
        return Webservice(workspace, name)

    # -- one version ------------------------------------------------------------------------

    @property
    def name(self) -> str:
        return self._record.name

    @property
    def version(self) -> int:
        return self._record.version

    @property
    def id(self) -> str:
        """``name:version``."""
        return self._record.id

    @property
    def tags(self) -> dict[str, str]:
        return dict(self._record.tags)

    @property
    def description(self) -> str | None:
        return self._record.description

    @property
    def model_framework(self) -> str:
        return self._record.framework

    @property
    def model_framework_version(self) -> str | None:
        return self._record.framework_version

    @property
    def created_time(self) -> str:
        return self._record.created_at

    def download(self, target_dir: str | os.PathLike[str] = ".", exist_ok: bool = False) -> str:
        """Write the model's file or folder into ``target_dir`` and return its path.

        An existing copy there is an error unless ``exist_ok``, which replaces it.
        """
        final = Path(target_dir) / self._record.root_name
        if exist_ok and (final.exists() or final.is_symlink()):
            if final.is_dir() and not final.is_symlink():
                shutil.rmtree(final)
            else:
                final.unlink()
        with translated():
            return str(self.workspace.registry.download(self.name, self.version, target_dir))

    def delete(self) -> None:
        """Remove this version (refused while a service uses it)."""
        with translated():
            self.workspace.registry.delete(self.name, self.version)

    def serialize(self) -> dict[str, Any]:
        """The version as JSON (the CLI's ``-o json`` shape)."""
        return self._record.to_json()

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Model) and (other.workspace.home, other.id) == (
            self.workspace.home,
            self.id,
        )

    def __hash__(self) -> int:
        return hash((self.workspace.home, self.id))

    def __repr__(self) -> str:
        return (
            f"Model(workspace={self.workspace!r}, name={self.name!r}, id={self.id!r}, "
            f"version={self.version}, tags={self.tags!r})"
        )


def _lookup(
    workspace: Workspace,
    name: str | None,
    model_id: str | None,
    version: int | None,
    tags: TagFilter | None,
    framework: str | None,
) -> ModelVersion:
    from tidal.registry import parse_model_id

    with translated():
        if model_id is not None:
            name, version = parse_model_id(model_id)
        if name is None:
            raise WebserviceException("Model: give a name or an id", "invalid")
        if tags is None and framework is None:
            return workspace.registry.get(name, version)
        candidates = [
            m._record
            for m in Model.list(workspace, name=name, tags=tags, model_framework=framework)
            if version is None or m.version == version
        ]
    if not candidates:
        raise WebserviceException(
            f"model '{name}' with those tags/framework not found", "not_found"
        )
    return max(candidates, key=lambda r: r.version)


def _tag_filter(tags: TagFilter | None) -> dict[str, str | None] | None:
    """Azure's tag filter (``['key', ['key2', 'value']]``) or a dict -> the registry's map."""
    if tags is None:
        return None
    if isinstance(tags, Mapping):
        return {str(k): None if v is None else str(v) for k, v in tags.items()}
    if isinstance(tags, str):
        return {tags: None}
    wanted: dict[str, str | None] = {}
    for item in tags:
        if isinstance(item, str):
            wanted[item] = None
        elif len(item) == 2:
            wanted[str(item[0])] = str(item[1])
        else:
            raise ValueError(f"tag filter entries are 'key' or ['key', 'value'], got {item!r}")
    return wanted
