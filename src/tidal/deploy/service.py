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
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from tidal.deploy import state
from tidal.deploy.errors import ServiceError
from tidal.deploy.host import HOST_FILE, KEYS_FILE
from tidal.deploy.model_layout import triton_subpath
from tidal.deploy.processes import (
    bind_public,
    free_port,
    host_alive,
    stop_group,
    wait_port_free,
)
from tidal.deploy.spec_json import (
    deployment_from_json,
    deployment_to_json,
    inference_from_json,
    inference_to_json,
)
from tidal.deploy.specs import DeploymentSpec, InferenceSpec
from tidal.home import tidal_home
from tidal.registry.model import name_problem
from tidal.security.keys import KeyHashes, generate_key

__all__ = ["ServiceError", "ServiceInfo", "ServiceManager"]

Output = Callable[[str], None]

SERVICES_DIR = "services"
AUTH_KEYS_FILE = "auth-keys.json"
LOG_FILE = "service.log"
APP_DIR = "app"
MODELS_DIR = "azureml-models"
_POLL_S = 0.2


@dataclass(frozen=True)
class ServiceInfo:
    """What ``show`` prints about a service."""

    name: str
    state: str
    scoring_uri: str
    swagger_uri: str | None
    port: int
    grpc_port: int | None
    pid: int | None
    models: list[str] = field(default_factory=list)
    compute_type: str = "local"
    auth_enabled: bool = True
    error: str | None = None
    created_at: str = ""
    updated_at: str = ""
    log_path: str = ""

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "state": self.state,
            "scoringUri": self.scoring_uri,
            "swaggerUri": self.swagger_uri,
            "port": self.port,
            "grpcPort": self.grpc_port,
            "pid": self.pid,
            "models": list(self.models),
            "computeType": self.compute_type,
            "authEnabled": self.auth_enabled,
            "error": self.error,
            "createdTime": self.created_at,
            "updatedTime": self.updated_at,
            "logPath": self.log_path,
        }


class ServiceManager:
    """Deploys, inspects, updates and deletes the local services of one home folder."""

    def __init__(self, home: Path | str | None = None) -> None:
        self.home = tidal_home(home)
        self.root = self.home / SERVICES_DIR
        connection = state.open_db(self.home)
        connection.close()

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
        if self._row(name) is not None:
            if not overwrite:
                raise ServiceError(
                    "in_use", f"service '{name}' already exists; use --overwrite to replace it"
                )
            self.delete(name)
        resolved = self._resolve_models(models)
        chosen_port = port if port is not None else deployment.port
        public = bind_public(chosen_port or 0)
        directory = self.root / name
        try:
            if directory.exists():
                shutil.rmtree(directory)
            directory.mkdir(parents=True)
            spec = self._prepare(directory, name, resolved, inference, deployment, 1)
            primary, secondary = generate_key(), generate_key()
            self._write_keys(directory, primary, secondary, deployment.auth_enabled)
            spec["grpc_port"] = free_port()
            _write_json(directory / HOST_FILE, spec)
            actual_port = public.getsockname()[1]
            connection = state.open_db(self.home)
            try:
                with connection:
                    state.insert(
                        connection,
                        name,
                        [(m.name, m.version) for m in resolved],
                        state="Transitioning",
                        mode=spec["mode"],
                        port=actual_port,
                        grpc_port=spec["grpc_port"] if spec["mode"] == "serve" else None,
                        auth_enabled=int(deployment.auth_enabled),
                        generation=1,
                    )
            finally:
                connection.close()
            pid = self._spawn_host(directory, public)
            state.update(self.home, name, pid=pid)
        except BaseException:
            public.close()
            self._forget(name)
            raise
        public.close()
        if output is not None:
            output(
                f"Service '{name}' starting on port {actual_port} (pid {pid}); "
                f"log {directory / LOG_FILE}"
            )
        if not wait:
            return self.get(name)
        return self.wait(name, timeout=timeout, output=output)

    def wait(self, name: str, timeout: float = 600.0, output: Output | None = None) -> ServiceInfo:
        """Until the service is Healthy or Failed (or Unhealthy after it served)."""
        deadline = time.monotonic() + timeout
        said = ""
        while True:
            info = self.get(name)
            if output is not None and info.state != said:
                output(f"{name}: {info.state}" + (f" ({info.error})" if info.error else ""))
                said = info.state
            if info.state in ("Healthy", "Failed", "Unhealthy"):
                return info
            if time.monotonic() > deadline:
                raise ServiceError(
                    "timeout", f"service '{name}' is still {info.state} after {timeout:g} s"
                )
            time.sleep(_POLL_S)

    # -- look up ------------------------------------------------------------------------------

    def get(self, name: str) -> ServiceInfo:
        found = self._row(name)
        if found is None:
            raise ServiceError("not_found", f"service '{name}' not found")
        return self._info(*found)

    def list(self) -> list[ServiceInfo]:
        connection = state.open_db(self.home)
        try:
            rows = state.fetch_all(connection)
        finally:
            connection.close()
        return [self._info(row, models) for row, models in rows]

    def keys(self, name: str) -> tuple[str, str]:
        """The plain (primary, secondary) keys."""
        self.get(name)
        try:
            data = json.loads((self.root / name / KEYS_FILE).read_text("utf-8"))
            return data["primary"], data["secondary"]
        except (OSError, ValueError, KeyError) as exc:
            raise ServiceError(
                "corrupt", f"service '{name}': cannot read its keys: {exc}"
            ) from None

    def regen_key(self, name: str, which: str, *, timeout: float = 600.0) -> tuple[str, str]:
        """Replace the primary or secondary key; the servers are rolled to the new keys file,
        so the old key is refused once this returns."""
        which = which.lower()
        if which not in ("primary", "secondary"):
            raise ServiceError("invalid", f"key must be primary or secondary, got '{which}'")
        info = self.get(name)
        primary, secondary = self.keys(name)
        if which == "primary":
            primary = generate_key()
        else:
            secondary = generate_key()
        self._write_keys(self.root / name, primary, secondary, info.auth_enabled)
        self._roll(name, _read_json(self.root / name / HOST_FILE), timeout=timeout, output=None)
        return primary, secondary

    def logs(self, name: str, tail: int | None = None) -> str:
        self.get(name)
        path = self.root / name / LOG_FILE
        try:
            text = path.read_text("utf-8", errors="replace")
        except FileNotFoundError:
            return ""
        if tail is not None:
            lines = text.splitlines(keepends=True)
            text = "".join(lines[-tail:]) if tail > 0 else ""
        return text

    def log_path(self, name: str) -> Path:
        self.get(name)
        return self.root / name / LOG_FILE

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
        info = self.get(name)
        if info.state == "Failed":
            raise ServiceError(
                "failed", f"service '{name}' has failed ({info.error}); deploy it again"
            )
        directory = self.root / name
        old = _read_json(directory / HOST_FILE)
        if deployment is not None and deployment.compute_type != "local":
            raise ServiceError("invalid", "an update cannot change computeType")
        if deployment is not None and deployment.auth_enabled != info.auth_enabled:
            primary, secondary = self.keys(name)
            self._write_keys(directory, primary, secondary, deployment.auth_enabled)
            state.update(self.home, name, auth_enabled=int(deployment.auth_enabled))
        resolved = self._resolve_models(models if models is not None else info.models)
        if inference is None and old.get("inference") is not None:
            inference = inference_from_json(old["inference"], Path(old["app_root"]))
        if deployment is None:
            deployment = deployment_from_json(old.get("deployment") or {})
        spec = self._prepare(directory, name, resolved, inference, deployment, 0)
        spec["grpc_port"] = old.get("grpc_port")
        connection = state.open_db(self.home)
        try:
            with connection:
                state.set_models(connection, name, [(m.name, m.version) for m in resolved])
        finally:
            connection.close()
        return self._roll(name, spec, timeout=timeout, output=output, wait=wait)

    def _roll(
        self,
        name: str,
        spec: dict[str, Any],
        *,
        timeout: float,
        output: Output | None,
        wait: bool = True,
    ) -> ServiceInfo:
        """Hand the host the next generation's description and wait until it serves."""
        directory = self.root / name
        info = self.get(name)
        if info.pid is None or info.state == "Failed":
            raise ServiceError("failed", f"service '{name}' is not running; deploy it again")
        found = self._row(name)
        assert found is not None
        generation = max(int(found[0]["generation"]), int(found[0]["active_generation"])) + 1
        spec = {**spec, "generation": generation}
        _write_json(directory / HOST_FILE, spec)
        state.update(self.home, name, generation=generation)
        os.kill(info.pid, signal.SIGHUP)
        if output is not None:
            output(f"{name}: starting generation {generation}")
        if not wait:
            return self.get(name)
        deadline = time.monotonic() + timeout
        while True:
            row = self._row(name)
            if row is None:
                raise ServiceError("not_found", f"service '{name}' was deleted during the update")
            current = self._info(*row)
            if row[0]["active_generation"] >= generation and current.state != "Transitioning":
                return current
            if row[0]["failed_generation"] >= generation:
                raise ServiceError("failed", f"service '{name}': {current.error}")
            if current.state == "Failed":
                raise ServiceError("failed", f"service '{name}' failed: {current.error}")
            if time.monotonic() > deadline:
                raise ServiceError("timeout", f"service '{name}': update still running")
            time.sleep(_POLL_S)

    # -- call ---------------------------------------------------------------------------------

    def call(self, name: str, input_data: str | bytes | object, key: str | None = None) -> object:
        """POST ``input_data`` to the scoring URI with the primary key; the decoded answer."""
        info = self.get(name)
        if isinstance(input_data, bytes):
            body, kind = input_data, "application/octet-stream"
        elif isinstance(input_data, str):
            body, kind = input_data.encode("utf-8"), "application/json"
        else:
            body, kind = json.dumps(input_data).encode("utf-8"), "application/json"
        request = urllib.request.Request(
            info.scoring_uri, data=body, method="POST", headers={"Content-Type": kind}
        )
        if info.auth_enabled:
            request.add_header("Authorization", f"Bearer {key or self.keys(name)[0]}")
        try:
            with urllib.request.urlopen(request, timeout=600) as response:
                answer = response.read()
        except urllib.error.HTTPError as exc:
            detail = exc.read().decode("utf-8", errors="replace")
            raise ServiceError(
                "failed", f"service '{name}' answered {exc.code}: {detail}"
            ) from None
        except (urllib.error.URLError, OSError) as exc:
            raise ServiceError("failed", f"cannot reach service '{name}': {exc}") from None
        try:
            return json.loads(answer)
        except ValueError:
            return answer.decode("utf-8", errors="replace")

    # -- delete -------------------------------------------------------------------------------

    def delete(self, name: str) -> None:
        """Stop the process group, wait for the port to be free, remove files and rows."""
        found = self._row(name)
        if found is None:
            raise ServiceError("not_found", f"service '{name}' not found")
        row = found[0]
        pid = row["pid"]
        if pid and host_alive(pid):
            stop_group(pid)
        wait_port_free(row["port"])
        self._forget(name)

    def _forget(self, name: str) -> None:
        shutil.rmtree(self.root / name, ignore_errors=True)
        connection = state.open_db(self.home)
        try:
            with connection:
                state.delete(connection, name)
        finally:
            connection.close()

    # -- internals ----------------------------------------------------------------------------

    def _row(self, name: str) -> tuple[sqlite3.Row, list[str]] | None:
        connection = state.open_db(self.home)
        try:
            return state.fetch(connection, name)
        finally:
            connection.close()

    def _info(self, row: sqlite3.Row, models: list[str]) -> ServiceInfo:
        current, error = row["state"], row["error"]
        pid = row["pid"]
        if current != "Failed" and pid and not host_alive(pid):
            # the host died without a word (killed): say so, and remember it
            current = "Failed"
            error = f"the service process {pid} is no longer running (killed or crashed)"
            state.update(self.home, row["name"], state=current, error=error)
        base = f"http://localhost:{row['port']}"
        scoring = f"{base}/score" if row["mode"] == "score" else f"{base}/"
        return ServiceInfo(
            name=row["name"],
            state=current,
            scoring_uri=scoring,
            swagger_uri=f"{base}/swagger.json" if row["mode"] == "score" else None,
            port=row["port"],
            grpc_port=row["grpc_port"],
            pid=pid,
            models=models,
            compute_type=row["compute_type"],
            auth_enabled=bool(row["auth_enabled"]),
            error=error,
            created_at=_iso(row["created_at"]),
            updated_at=_iso(row["updated_at"]),
            log_path=str(self.root / row["name"] / LOG_FILE),
        )

    def _resolve_models(self, models: Sequence[str]) -> list[Any]:
        from tidal.registry import ModelRegistry, RegistryError, parse_model_id

        if not models:
            raise ServiceError("invalid", "give at least one model (-m NAME:VERSION)")
        registry = ModelRegistry(self.home)
        resolved = []
        try:
            for text in models:
                model_name, version = parse_model_id(text)
                resolved.append(registry.get(model_name, version))
        except RegistryError as exc:
            raise ServiceError(exc.kind, str(exc)) from None
        return resolved

    def _prepare(
        self,
        directory: Path,
        name: str,
        models: Sequence[Any],
        inference: InferenceSpec | None,
        deployment: DeploymentSpec,
        generation: int,
    ) -> dict[str, Any]:
        """Place the models and the app, and return the host's description of the service."""
        from tidal.registry import ModelRegistry, RegistryError

        registry = ModelRegistry(self.home)
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
            subpath = triton_subpath(
                path for path, _, _ in registry.files(model.name, model.version)
            )
            if subpath is not None and root.is_dir():
                repositories.append(str(root / subpath) if subpath else str(root))
        variables = dict(deployment.environment_variables)
        spec: dict[str, Any] = {
            "name": name,
            "home": str(self.home),
            "generation": generation,
            "auth_keys_file": str(directory / AUTH_KEYS_FILE) if deployment.auth_enabled else "",
            "deployment": deployment_to_json(deployment),
            "inference": None,
        }
        if inference is None:
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
            spec.update(
                mode="serve", model_repository=repositories, environment_variables=variables
            )
            return spec
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
        spec.update(
            mode="score",
            model_repository=repositories,
            entry_script=str(app / entry),
            app_root=str(app),
            model_dir=str(model_dir),
            pip_packages=list(environment.pip_packages) if environment else [],
            environment_variables=env_vars,
            scoring_timeout_ms=deployment.scoring_timeout_ms,
            max_concurrent_requests=deployment.max_concurrent_requests,
            inference=inference_to_json(entry, environment),
        )
        return spec

    def _write_keys(self, directory: Path, primary: str, secondary: str, enabled: bool) -> None:
        # The plain keys are for the owner only (keys/get_keys); servers read the digests.
        plain = directory / KEYS_FILE
        tmp = plain.with_suffix(".tmp")
        descriptor = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
            json.dump({"primary": primary, "secondary": secondary}, handle)
        tmp.replace(plain)
        _write_json(directory / AUTH_KEYS_FILE, KeyHashes.of(primary, secondary).to_json())

    def _spawn_host(self, directory: Path, public: socket.socket) -> int:
        log = open(directory / LOG_FILE, "ab")  # noqa: SIM115 - handed to the child
        try:
            proc = subprocess.Popen(
                [sys.executable, "-m", "tidal.deploy.host", str(directory), str(public.fileno())],
                pass_fds=(public.fileno(),),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
                cwd=directory,
                start_new_session=True,  # outlives the CLI; its process group is the service
            )
        finally:
            log.close()
        return proc.pid


# -- helpers ----------------------------------------------------------------------------------


def _check_name(name: str) -> None:
    problem = name_problem(name, "service")
    if problem is not None:
        raise ServiceError("invalid", problem)


def _copy_app(inference: InferenceSpec, app: Path) -> None:
    """Copy the source directory (or just the entry script) to ``app``."""
    if inference.source_directory is not None:
        shutil.copytree(inference.source_directory, app, symlinks=True)
    else:
        app.mkdir(parents=True)
        script = Path(inference.entry_script)
        shutil.copy2(script, app / script.name)


def _write_json(path: Path, data: Any) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(data, indent=2), encoding="utf-8")
    tmp.replace(path)


def _read_json(path: Path) -> dict[str, Any]:
    try:
        return json.loads(path.read_text("utf-8"))
    except (OSError, ValueError) as exc:
        raise ServiceError("corrupt", f"cannot read '{path}': {exc}") from None


def _iso(stamp: float) -> str:
    return datetime.fromtimestamp(stamp, timezone.utc).isoformat(timespec="seconds")
