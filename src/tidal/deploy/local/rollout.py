"""Updates: the next generation's description handed to the running host (``host.json``,
then SIGHUP); the new processes serve before the old ones get SIGTERM."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from tidal.deploy.errors import ServiceError
from tidal.deploy.local.files import HOST_FILE, read_json, write_json
from tidal.deploy.local.placement import host_spec, resolve_models
from tidal.deploy.local.records import ServiceInfo, ServiceRecords
from tidal.deploy.spec_json import deployment_from_json, inference_from_json
from tidal.deploy.specs import DeploymentSpec, InferenceSpec

__all__ = ["current_spec", "roll", "update"]

Output = Callable[[str], None]

_POLL_S = 0.2


def current_spec(records: ServiceRecords, name: str) -> dict[str, Any]:
    """The description the host runs now."""
    return read_json(records.directory(name) / HOST_FILE)


def update(
    records: ServiceRecords,
    name: str,
    *,
    models: Sequence[str] | None,
    inference: InferenceSpec | None,
    deployment: DeploymentSpec | None,
    wait: bool,
    timeout: float,
    output: Output | None,
) -> ServiceInfo:
    """Roll service ``name`` to new models/config; what is not given is kept."""
    info = records.get(name)
    if info.state == "Failed":
        raise ServiceError("failed", f"service '{name}' has failed ({info.error}); deploy it again")
    old = current_spec(records, name)
    if deployment is not None and deployment.compute_type != "local":
        raise ServiceError("invalid", "an update cannot change computeType")
    if deployment is not None and deployment.auth_enabled != info.auth_enabled:
        records.update(name, auth_enabled=int(deployment.auth_enabled))
    resolved = resolve_models(records.home, models if models is not None else info.models)
    if inference is None and old.get("inference") is not None:
        inference = inference_from_json(old["inference"], Path(old["app_root"]))
    if deployment is None:
        deployment = deployment_from_json(old.get("deployment") or {})
    directory = records.directory(name)
    spec = host_spec(records.home, directory, name, resolved, inference, deployment, 0)
    spec["grpc_port"] = old.get("grpc_port")
    records.set_models(name, [(m.name, m.version) for m in resolved])
    return roll(records, name, spec, timeout=timeout, output=output, wait=wait)


def roll(
    records: ServiceRecords,
    name: str,
    spec: dict[str, Any],
    *,
    timeout: float,
    output: Output | None,
    wait: bool = True,
) -> ServiceInfo:
    """Hand the host the next generation's description and (with ``wait``) wait until it
    serves."""
    info = records.get(name)
    if info.pid is None or info.state == "Failed":
        raise ServiceError("failed", f"service '{name}' is not running; deploy it again")
    row = records.raw(name)
    generation = max(int(row["generation"]), int(row["active_generation"])) + 1
    write_json(records.directory(name) / HOST_FILE, {**spec, "generation": generation})
    records.update(name, generation=generation)
    os.kill(info.pid, signal.SIGHUP)
    if output is not None:
        output(f"{name}: starting generation {generation}")
    if not wait:
        return records.get(name)
    return _wait_generation(records, name, generation, timeout)


def _wait_generation(
    records: ServiceRecords, name: str, generation: int, timeout: float
) -> ServiceInfo:
    """Until ``generation`` is active and settled; ``failed`` when it (or the service) fails."""
    deadline = time.monotonic() + timeout
    while True:
        found = records.row(name)
        if found is None:
            raise ServiceError("not_found", f"service '{name}' was deleted during the update")
        row = found[0]
        current = records.info(*found)
        if row["active_generation"] >= generation and current.state != "Transitioning":
            return current
        if row["failed_generation"] >= generation:
            raise ServiceError("failed", f"service '{name}': {current.error}")
        if current.state == "Failed":
            raise ServiceError("failed", f"service '{name}' failed: {current.error}")
        if time.monotonic() > deadline:
            raise ServiceError("timeout", f"service '{name}': update still running")
        time.sleep(_POLL_S)
