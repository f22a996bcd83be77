"""Talking to a cluster through ``kubectl``: apply, show, logs, delete.

tidal holds no cluster credentials and speaks no Kubernetes API itself: ``kubectl`` and its
current context (``KUBECONFIG``) decide where objects go, as they do for every other tool.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Sequence
from typing import Any

from tidal.deploy.kubernetes.output import to_json
from tidal.deploy.kubernetes.render import selector_for

__all__ = [
    "KINDS",
    "KubectlError",
    "apply",
    "current_context",
    "delete",
    "kubectl_path",
    "logs",
    "show",
    "summarize",
]

# What ``render`` may create, so ``delete`` removes all of it by label.
KINDS = "deployment,service,secret,configmap,horizontalpodautoscaler,poddisruptionbudget"
_TIMEOUT_S = 120.0


class KubectlError(RuntimeError):
    """kubectl is missing, has no current context, or refused; the message is one line."""


def kubectl_path() -> str:
    """The kubectl executable (``TIDAL_KUBECTL`` overrides the one on ``PATH``)."""
    wanted = os.environ.get("TIDAL_KUBECTL") or "kubectl"
    found = shutil.which(wanted)
    if found is None:
        raise KubectlError(
            f"'{wanted}' was not found on PATH: install kubectl and point it at a cluster"
        )
    return found


def apply(objects: Sequence[dict[str, Any]], namespace: str | None = None) -> str:
    """``kubectl apply`` the objects to the current context; kubectl's summary lines."""
    return _run(["apply", "-f", "-"], namespace, stdin=to_json(objects))


def show(name: str, namespace: str | None = None) -> dict[str, Any]:
    """The service's state, read from its Deployment and Service (Azure-like keys)."""
    found = json.loads(
        _run(["get", "deployment,service", "-l", _selector(name), "-o", "json"], namespace)
    )
    items = found.get("items", [])
    deployment = next((i for i in items if i.get("kind") == "Deployment"), None)
    service = next((i for i in items if i.get("kind") == "Service"), None)
    if deployment is None:
        raise KubectlError(f"service '{name}' has no Deployment in this namespace")
    return summarize(deployment, service)


def summarize(deployment: dict[str, Any], service: dict[str, Any] | None) -> dict[str, Any]:
    """State and addresses from a Deployment and its Service as the API returns them."""
    spec, status = deployment.get("spec", {}), deployment.get("status", {})
    wanted = spec.get("replicas", 1)
    ready = status.get("readyReplicas", 0)
    updated = status.get("updatedReplicas", 0)
    conditions = {c.get("type"): c for c in status.get("conditions", [])}
    progressing = conditions.get("Progressing", {})
    if progressing.get("reason") == "ProgressDeadlineExceeded":
        state = "Failed"
    elif ready >= wanted and updated >= wanted and wanted > 0:
        state = "Healthy"
    elif ready > 0:
        state = "Transitioning" if updated < wanted else "Unhealthy"
    else:
        state = "Transitioning"
    metadata = deployment.get("metadata", {})
    models = metadata.get("annotations", {}).get("tidal/models", "")
    summary: dict[str, Any] = {
        "name": metadata.get("name"),
        "namespace": metadata.get("namespace"),
        "computeType": "kubernetes",
        "state": state,
        "replicas": wanted,
        "readyReplicas": ready,
        "models": [m for m in models.split(",") if m],
        "scoringUri": None,
    }
    if service is not None:
        summary["scoringUri"] = _scoring_uri(service)
    return summary


def logs(
    name: str, namespace: str | None = None, tail: int | None = None, follow: bool = False
) -> str:
    """The logs of every pod of the service, each line prefixed with its pod and container.

    With ``follow`` kubectl streams to this process's stdout until interrupted; returns "".
    """
    args = ["logs", "-l", _selector(name), "--all-containers", "--prefix"]
    args.append(f"--tail={tail if tail is not None else -1}")
    if follow:
        kubectl, _ = current_context()
        command = [kubectl, *args, "--follow"] + (["--namespace", namespace] if namespace else [])
        code = subprocess.call(command)
        if code not in (0, -2, 130):  # Ctrl-C ends a follow
            raise KubectlError(f"kubectl logs failed with exit status {code}")
        return ""
    return _run(args, namespace)


def delete(name: str, namespace: str | None = None) -> str:
    """Delete every object of the service (by its labels); kubectl's summary lines."""
    return _run(["delete", KINDS, "-l", _selector(name), "--ignore-not-found"], namespace)


def _scoring_uri(service: dict[str, Any]) -> str | None:
    spec = service.get("spec", {})
    port = next((p for p in spec.get("ports", []) if p.get("name") == "http"), None)
    if port is None:
        return None
    ingress = service.get("status", {}).get("loadBalancer", {}).get("ingress") or [{}]
    host = ingress[0].get("ip") or ingress[0].get("hostname")
    if host is None:  # in-cluster DNS name of the Service
        metadata = service.get("metadata", {})
        host = f"{metadata.get('name')}.{metadata.get('namespace', 'default')}.svc"
    is_scoring = (
        service.get("metadata", {}).get("labels", {}).get("app.kubernetes.io/component")
        == "scoring-server"
    )
    return f"http://{host}:{port['port']}" + ("/score" if is_scoring else "")


def _selector(name: str) -> str:
    return ",".join(f"{key}={value}" for key, value in selector_for(name).items())


def current_context() -> tuple[str, str]:
    """kubectl's path and current context; ``KubectlError`` when either is missing."""
    kubectl = kubectl_path()
    try:
        context = subprocess.run(
            [kubectl, "config", "current-context"],
            capture_output=True,
            text=True,
            timeout=_TIMEOUT_S,
            check=False,
        )
    except OSError as exc:
        raise KubectlError(f"cannot run {kubectl}: {exc.strerror or exc}") from None
    if context.returncode != 0 or not context.stdout.strip():
        raise KubectlError(
            "kubectl has no current context: choose a cluster with 'kubectl config use-context "
            "NAME' (or set KUBECONFIG)"
        )
    return kubectl, context.stdout.strip()


def _run(args: list[str], namespace: str | None, stdin: str | None = None) -> str:
    kubectl, _ = current_context()
    command = [kubectl, *args]
    if namespace:
        command += ["--namespace", namespace]
    try:
        done = subprocess.run(
            command, input=stdin, capture_output=True, text=True, timeout=_TIMEOUT_S, check=False
        )
    except subprocess.TimeoutExpired:
        raise KubectlError(f"kubectl {args[0]} did not answer in {_TIMEOUT_S:.0f} s") from None
    if done.returncode != 0:
        lines = [line for line in done.stderr.splitlines() if line.strip()]
        reason = lines[-1].strip() if lines else f"exit status {done.returncode}"
        raise KubectlError(f"kubectl {args[0]} failed: {reason}")
    return done.stdout
