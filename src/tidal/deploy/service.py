"""``ServiceManager``: named local services, each a supervised process group on one port.

A service lives in ``TIDAL_HOME/services/<name>/``::

    host.json         what the host process runs (rewritten by update, then SIGHUP)
    keys.json         the plain primary and secondary keys, mode 0600 (``keys``/``get_keys``)
    auth-keys.json    their SHA-256 digests: the only key file the servers read
    service.log       the host's and the servers' log
    app-<stamp>/      a copy of the sourceDirectory per generation (AML_APP_ROOT)
    azureml-models/<model>/<version>/<registered root>   the models, hard links into the store

Its row in the ``services`` table (see ``tidal.deploy.state``) holds the state, ports and the
host's pid. ``get``/``list`` check that pid, so a service whose host was killed shows Failed.
The manager is the public face; the work is done in ``tidal.deploy.local``'s modules.
"""

from __future__ import annotations

import builtins
from collections.abc import Callable, Sequence
from pathlib import Path

from tidal.deploy.errors import ServiceError
from tidal.deploy.local import calls, lifecycle, rollout
from tidal.deploy.local.files import LOG_FILE, read_log
from tidal.deploy.local.keys import KEY_NAMES, read_keys, regenerated, write_keys
from tidal.deploy.local.placement import resolve_models
from tidal.deploy.local.records import ServiceInfo, ServiceRecords
from tidal.deploy.specs import DeploymentSpec, InferenceSpec
from tidal.home import tidal_home
from tidal.registry.model import name_problem

__all__ = ["ServiceError", "ServiceInfo", "ServiceManager"]

Output = Callable[[str], None]


class ServiceManager:
    """Deploys, inspects, updates and deletes the local services of one home folder."""

    def __init__(self, home: Path | str | None = None) -> None:
        self.home = tidal_home(home)
        self._records = ServiceRecords(self.home)
        self.root = self._records.root

    # -- deploy -------------------------------------------------------------------------------

    def deploy(
        self,
        name: str,
        models: Sequence[str],
        *,
        inference: InferenceSpec | None = None,
        deployment: DeploymentSpec | None = None,
        port: int | None = None,
        overwrite: bool = False,
        wait: bool = True,
        timeout: float = 600.0,
        output: Output | None = None,
    ) -> ServiceInfo:
        """Start service ``name`` serving ``models`` ("name:version"); by default wait for it."""
        _check_name(name)
        deployment = deployment or DeploymentSpec()
        if deployment.compute_type != "local":
            raise ServiceError(
                "invalid",
                f"computeType '{deployment.compute_type}' is not deployed by the local manager",
            )
        if self._records.row(name) is not None:
            if not overwrite:
                raise ServiceError(
                    "in_use", f"service '{name}' already exists; use --overwrite to replace it"
                )
            self.delete(name)
        resolved = resolve_models(self.home, models)
        chosen_port = port if port is not None else deployment.port
        started = lifecycle.create(
            self._records, name, resolved, inference, deployment, chosen_port or 0
        )
        if output is not None:
            output(
                f"Service '{name}' starting on port {started.port} (pid {started.pid}); "
                f"log {self.log_path(name)}"
            )
        if not wait:
            return self.get(name)
        return self.wait(name, timeout=timeout, output=output)

    def wait(self, name: str, timeout: float = 600.0, output: Output | None = None) -> ServiceInfo:
        """Until the service is Healthy or Failed (or Unhealthy after it served)."""
        return lifecycle.wait_settled(self._records, name, timeout, output)

    # -- look up ------------------------------------------------------------------------------

    def get(self, name: str) -> ServiceInfo:
        return self._records.get(name)

    def list(self) -> builtins.list[ServiceInfo]:
        return self._records.all()

    def keys(self, name: str) -> tuple[str, str]:
        """The plain (primary, secondary) keys."""
        self.get(name)
        return read_keys(self._records.directory(name), name)

    def regen_key(self, name: str, which: str, *, timeout: float = 600.0) -> tuple[str, str]:
        """Replace the primary or secondary key; the servers are rolled to the new keys file,
        so the old key is refused once this returns."""
        which = which.lower()
        if which not in KEY_NAMES:
            raise ServiceError("invalid", f"key must be primary or secondary, got '{which}'")
        keys = regenerated(self.keys(name), which)
        write_keys(self._records.directory(name), keys)
        spec = rollout.current_spec(self._records, name)
        rollout.roll(self._records, name, spec, timeout=timeout, output=None)
        return keys

    def logs(self, name: str, tail: int | None = None) -> str:
        return read_log(self.log_path(name), tail)

    def log_path(self, name: str) -> Path:
        self.get(name)
        return self._records.directory(name) / LOG_FILE

    # -- update -------------------------------------------------------------------------------

    def update(
        self,
        name: str,
        *,
        models: Sequence[str] | None = None,
        inference: InferenceSpec | None = None,
        deployment: DeploymentSpec | None = None,
        wait: bool = True,
        timeout: float = 600.0,
        output: Output | None = None,
    ) -> ServiceInfo:
        """Roll the service to new models/config: the new processes are serving before the old
        ones get SIGTERM. What is not given is kept."""
        return rollout.update(
            self._records,
            name,
            models=models,
            inference=inference,
            deployment=deployment,
            wait=wait,
            timeout=timeout,
            output=output,
        )

    # -- call and delete ----------------------------------------------------------------------

    def call(self, name: str, input_data: str | bytes | object, key: str | None = None) -> object:
        """POST ``input_data`` to the scoring URI with the primary key; the decoded answer."""
        info = self.get(name)
        if info.auth_enabled and key is None:
            key = self.keys(name)[0]
        return calls.call(info, input_data, key)

    def delete(self, name: str) -> None:
        """Stop the process group, wait for the port to be free, remove files and rows."""
        lifecycle.stop(self._records, name)


def _check_name(name: str) -> None:
    problem = name_problem(name, "service")
    if problem is not None:
        raise ServiceError("invalid", problem)
