"""A service's host process: created (folder, keys, row, then the host on the public socket),
waited on until it settles, and stopped."""

from __future__ import annotations

import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from tidal.deploy.errors import ServiceError
from tidal.deploy.local.files import HOST_FILE, LOG_FILE, write_json
from tidal.deploy.local.keys import new_keys, write_keys
from tidal.deploy.local.placement import host_spec
from tidal.deploy.local.records import ServiceInfo, ServiceRecords
from tidal.deploy.processes import bind_public, free_port, host_alive, stop_group, wait_port_free
from tidal.deploy.specs import DeploymentSpec, InferenceSpec
from tidal.registry import ModelVersion

__all__ = ["Started", "create", "stop", "wait_settled"]

Output = Callable[[str], None]

_POLL_S = 0.2
_SETTLED = ("Healthy", "Failed", "Unhealthy")


@dataclass(frozen=True)
class Started:
    """A service whose host process was just started."""

    port: int
    pid: int


def create(
    records: ServiceRecords,
    name: str,
    models: Sequence[ModelVersion],
    inference: InferenceSpec | None,
    deployment: DeploymentSpec,
    port: int,
) -> Started:
    """Lay out service ``name`` (generation 1), record it, and start its host on ``port``
    (0 picks a free one). A failure leaves neither folder nor row."""
    public = bind_public(port)
    directory = records.directory(name)
    try:
        if directory.exists():
            shutil.rmtree(directory)
        directory.mkdir(parents=True)
        spec = host_spec(records.home, directory, name, models, inference, deployment, 1)
        write_keys(directory, new_keys())
        spec["grpc_port"] = free_port()
        write_json(directory / HOST_FILE, spec)
        actual_port = public.getsockname()[1]
        records.insert(
            name,
            [(m.name, m.version) for m in models],
            state="Transitioning",
            mode=spec["mode"],
            port=actual_port,
            grpc_port=spec["grpc_port"] if spec["mode"] == "serve" else None,
            auth_enabled=int(deployment.auth_enabled),
            generation=1,
        )
        pid = _spawn_host(records, name, public)
        records.update(name, pid=pid)
    except BaseException:
        records.forget(name)
        raise
    finally:
        public.close()
    return Started(actual_port, pid)


def wait_settled(
    records: ServiceRecords, name: str, timeout: float, output: Output | None
) -> ServiceInfo:
    """Until the service is Healthy or Failed (or Unhealthy after it served)."""
    deadline = time.monotonic() + timeout
    said = ""
    while True:
        info = records.get(name)
        if output is not None and info.state != said:
            output(f"{name}: {info.state}" + (f" ({info.error})" if info.error else ""))
            said = info.state
        if info.state in _SETTLED:
            return info
        if time.monotonic() > deadline:
            raise ServiceError(
                "timeout", f"service '{name}' is still {info.state} after {timeout:g} s"
            )
        time.sleep(_POLL_S)


def stop(records: ServiceRecords, name: str) -> None:
    """Stop the process group, wait for the port to be free, remove files and rows."""
    row = records.raw(name)
    pid = row["pid"]
    if pid and host_alive(pid):
        stop_group(pid)
    wait_port_free(row["port"])
    records.forget(name)


def _spawn_host(records: ServiceRecords, name: str, public: socket.socket) -> int:
    directory = records.directory(name)
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
