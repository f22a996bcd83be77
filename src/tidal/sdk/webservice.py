"""``Webservice`` / ``LocalWebservice``: named local services, as Azure ML's v1 SDK shows them.

A thin layer over ``tidal.deploy.service.ServiceManager``: every call is one manager call;
the state lives in the workspace's home, so any process (the CLI included) sees the same.
"""

from __future__ import annotations

import builtins
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from ._errors import WebserviceException, translated

if TYPE_CHECKING:
    from tidal.deploy.service import ServiceInfo
    from tidal.deploy.specs import DeploymentSpec

    from .inference_config import InferenceConfig
    from .model import Model
    from .workspace import Workspace

__all__ = [
    "LocalWebservice",
    "LocalWebserviceDeploymentConfiguration",
    "Webservice",
    "deploy_service",
]

_KEY_NAMES = {"primary": "primary", "secondary": "secondary"}
_LOG_TAIL_ON_FAILURE = 40
DEFAULT_TIMEOUT_S = 600.0


class LocalWebserviceDeploymentConfiguration:
    """Where and how a local service listens (``LocalWebservice.deploy_configuration()``)."""

    def __init__(
        self,
        port: int | None = None,
        *,
        auth_enabled: bool = True,
        scoring_timeout_ms: int | None = None,
        replica_max_concurrent_requests: int | None = None,
        cpu_cores: float | None = None,
        memory_gb: float | None = None,
        gpu_cores: int | None = None,
        environment_variables: dict[str, str] | None = None,
    ) -> None:
        self.port = port
        self.auth_enabled = auth_enabled
        self.scoring_timeout_ms = scoring_timeout_ms
        self.replica_max_concurrent_requests = replica_max_concurrent_requests
        self.cpu_cores = cpu_cores
        self.memory_gb = memory_gb
        self.gpu_cores = gpu_cores
        self.environment_variables = dict(environment_variables or {})

    def to_json(self) -> dict[str, Any]:
        """The ``deploymentconfig.json`` this configuration stands for."""
        body: dict[str, Any] = {"computeType": "local", "authEnabled": self.auth_enabled}
        optional = {
            "port": self.port,
            "scoringTimeoutMs": self.scoring_timeout_ms,
            "maxConcurrentRequestsPerContainer": self.replica_max_concurrent_requests,
            "environmentVariables": self.environment_variables or None,
        }
        body.update({k: v for k, v in optional.items() if v is not None})
        resources = {"cpu": self.cpu_cores, "memoryInGB": self.memory_gb, "gpu": self.gpu_cores}
        if any(v is not None for v in resources.values()):
            body["containerResourceRequirements"] = {
                k: v for k, v in resources.items() if v is not None
            }
        return body

    def to_spec(self) -> DeploymentSpec:
        """The deployment layer's ``DeploymentSpec`` (validated as the JSON file would be)."""
        from tidal.deploy.specs import deployment_spec_from_json

        parsed = deployment_spec_from_json(self.to_json())
        # The parser may hand back (spec, warnings) like load_deployment_config; no field here
        # is unknown, so there is nothing to warn about.
        return parsed[0] if isinstance(parsed, tuple) else parsed

    def __repr__(self) -> str:
        return f"LocalWebserviceDeploymentConfiguration({self.to_json()!r})"


class Webservice:
    """A deployed service. ``Webservice(ws, name)`` looks it up (``WebserviceException`` with
    kind ``not_found`` when there is none); a local one comes back as ``LocalWebservice``.
    """

    workspace: Workspace
    name: str
    _info: ServiceInfo

    def __new__(cls, workspace: Workspace, name: str) -> Webservice:
        with translated():
            info = workspace.service_manager.get(name)
        if cls is LocalWebservice and info.compute_type != "local":
            raise WebserviceException(
                f"service {name!r} runs on {info.compute_type}, not locally: use Webservice",
                "invalid",
            )
        return cls._from_info(workspace, info)

    def __init__(self, workspace: Workspace, name: str) -> None:
        # Everything was set by __new__ (so a lookup happens once).
        pass

    @classmethod
    def _from_info(cls, workspace: Workspace, info: ServiceInfo) -> Webservice:
        chosen = LocalWebservice if cls is Webservice and info.compute_type == "local" else cls
        self = object.__new__(chosen)
        self.workspace = workspace
        self.name = info.name
        self._info = info
        return self

    @staticmethod
    def list(
        workspace: Workspace,
        compute_type: str | None = None,
        model_name: str | None = None,
        model_id: str | None = None,
    ) -> builtins.list[Webservice]:
        """The workspace's services, optionally only those of a compute type or model."""
        with translated():
            infos = workspace.service_manager.list()
        found = []
        for info in infos:
            if compute_type is not None and info.compute_type.lower() != compute_type.lower():
                continue
            if model_id is not None and model_id not in info.models:
                continue
            if model_name is not None and not any(
                m.partition(":")[0] == model_name for m in info.models
            ):
                continue
            found.append(Webservice._from_info(workspace, info))
        return found

    # -- state ------------------------------------------------------------------------------

    @property
    def state(self) -> str:
        """Transitioning, Healthy, Unhealthy or Failed, asked afresh on every read."""
        self.reload()
        return self._info.state

    @property
    def info(self) -> ServiceInfo:
        """The service record as last read (tidal's ``ServiceInfo``: pid, ports, error ...)."""
        return self._info

    @property
    def scoring_uri(self) -> str | None:
        return self._info.scoring_uri

    @property
    def swagger_uri(self) -> str | None:
        return self._info.swagger_uri

    @property
    def port(self) -> int | None:
        return self._info.port

    @property
    def grpc_port(self) -> int | None:
        return self._info.grpc_port

    @property
    def compute_type(self) -> str:
        return self._info.compute_type

    @property
    def auth_enabled(self) -> bool:
        return self._info.auth_enabled

    @property
    def error(self) -> str | None:
        """Why the service failed, if it did."""
        return self._info.error

    @property
    def models(self) -> builtins.list[Model]:
        """The model versions the service serves."""
        from .model import Model

        return [Model(self.workspace, id=model_id) for model_id in self._info.models]

    @property
    def created_time(self) -> str:
        return str(self._info.created_at)

    @property
    def updated_time(self) -> str:
        return str(self._info.updated_at)

    def reload(self) -> None:
        """Read the service record again."""
        with translated():
            self._info = self.workspace.service_manager.get(self.name)

    def serialize(self) -> dict[str, Any]:
        """The service record as JSON (``tidal service show`` prints the same)."""
        return self._info.to_json()

    # -- calls ------------------------------------------------------------------------------

    def wait_for_deployment(
        self, show_output: bool = False, timeout_sec: float | None = None
    ) -> None:
        """Block until the service is Healthy; raise ``WebserviceException`` (with the end of
        the service log) when it ends in any other state.
        """
        output = print if show_output else None
        with translated():
            self._info = self.workspace.service_manager.wait(
                self.name, timeout=timeout_sec or DEFAULT_TIMEOUT_S, output=output
            )
        if self._info.state != "Healthy":
            raise WebserviceException(self._failure_message(), "failed")
        if show_output:
            print(f"Service {self.name} is Healthy: {self.scoring_uri}")

    def get_keys(self) -> tuple[str, str]:
        """The primary and secondary keys."""
        with translated():
            return self.workspace.service_manager.keys(self.name)

    def regen_key(self, key: str, set_key: str | None = None) -> None:
        """Replace the ``"Primary"`` or ``"Secondary"`` key with a new random one."""
        which = _KEY_NAMES.get(str(key).lower())
        if which is None:
            raise WebserviceException(
                f"key must be 'Primary' or 'Secondary', got {key!r}", "invalid"
            )
        if set_key is not None:
            raise WebserviceException(
                "set_key is not supported: tidal generates keys (regen_key(key) alone)", "invalid"
            )
        with translated():
            self.workspace.service_manager.regen_key(self.name, which)

    def get_logs(self, num_lines: int | None = 5000) -> str:
        """The last ``num_lines`` lines of the service log (all of it when None)."""
        with translated():
            return self.workspace.service_manager.logs(self.name, tail=num_lines)

    def run(self, input_data: Any, *, key: str | None = None) -> Any:
        """POST ``input_data`` to the scoring URI (with the primary key unless ``key``) and
        return the decoded answer.
        """
        with translated():
            return self.workspace.service_manager.call(self.name, input_data, key=key)

    def update(
        self,
        models: Sequence[Model | str] | None = None,
        image_config: Any = None,
        deployment_config: LocalWebserviceDeploymentConfiguration | None = None,
        wait: bool = False,
        inference_config: InferenceConfig | None = None,
    ) -> None:
        """Swap in new models / entry script / settings; arguments left None stay as they are.

        The new processes become Healthy before the old ones stop. With ``wait`` this blocks
        until then (else call ``wait_for_deployment()``).
        """
        if image_config is not None:
            raise WebserviceException("image_config has no local meaning", "invalid")
        with translated():
            self._info = self.workspace.service_manager.update(
                self.name,
                models=_model_ids(models) if models is not None else None,
                inference=inference_config.to_spec() if inference_config is not None else None,
                deployment=deployment_config.to_spec() if deployment_config is not None else None,
                wait=wait,
            )
        if wait and self._info.state != "Healthy":
            raise WebserviceException(self._failure_message(), "failed")

    def delete(self) -> None:
        """Stop the service, free its port and remove its files."""
        with translated():
            self.workspace.service_manager.delete(self.name)

    def _failure_message(self) -> str:
        try:
            tail = self.get_logs(_LOG_TAIL_ON_FAILURE)
        except WebserviceException:
            tail = ""
        reason = f": {self._info.error}" if self._info.error else ""
        message = f"Service {self.name} ended in state {self._info.state}{reason}"
        return message + (f"\n--- last lines of the service log ---\n{tail}" if tail else "")

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(workspace={self.workspace!r}, name={self.name!r}, "
            f"state={self._info.state!r}, scoring_uri={self.scoring_uri!r})"
        )


class LocalWebservice(Webservice):
    """A service running as local processes on this machine."""

    @staticmethod
    def deploy_configuration(
        port: int | None = None, **settings: Any
    ) -> LocalWebserviceDeploymentConfiguration:
        """The deployment configuration of a local service; ``port`` None picks a free one.

        tidal also takes ``auth_enabled``, ``scoring_timeout_ms``,
        ``replica_max_concurrent_requests``, ``cpu_cores``, ``memory_gb``, ``gpu_cores`` and
        ``environment_variables`` (Azure's AKS names).
        """
        return LocalWebserviceDeploymentConfiguration(port, **settings)


def deploy_service(
    workspace: Workspace,
    name: str,
    models: Sequence[Model | str],
    *,
    inference_config: InferenceConfig | None,
    deployment_config: LocalWebserviceDeploymentConfiguration | None,
    overwrite: bool,
    show_output: bool,
) -> ServiceInfo:
    """Start a service without waiting for it (``Model.deploy``'s body)."""
    with translated():
        return workspace.service_manager.deploy(
            name,
            _model_ids(models),
            inference=inference_config.to_spec() if inference_config is not None else None,
            deployment=deployment_config.to_spec() if deployment_config is not None else None,
            overwrite=overwrite,
            wait=False,
            output=print if show_output else None,
        )


def _model_ids(models: Sequence[Model | str]) -> list[str]:
    if isinstance(models, str) or not isinstance(models, Sequence):
        raise WebserviceException("models must be a list of Model objects or ids", "invalid")
    return [m if isinstance(m, str) else m.id for m in models]
