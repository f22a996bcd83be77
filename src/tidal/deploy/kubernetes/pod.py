"""The pod template of a tidal service: containers, probes, volumes, resources, security.

Two shapes, as in local deployments: without an entry script the pod runs ``tidal serve`` on
the models' ``triton/`` repositories (HTTP, gRPC and metrics ports); with one it runs
``tidal score``, which serves ``/score`` on one public port and starts ``tidal serve`` on
loopback for the models that hold a ``triton/`` folder.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import Any

from tidal.deploy.kubernetes.options import KubernetesOptions

__all__ = [
    "GRPC_PORT",
    "HTTP_PORT",
    "KEYS_FILE",
    "METRICS_PORT",
    "MODELS_DIR",
    "SCORING_PORT",
    "PodPlan",
    "pod_spec",
]

HTTP_PORT = 8000
GRPC_PORT = 8001
METRICS_PORT = 8002
SCORING_PORT = 5001
MODELS_DIR = "/models"
APP_DIR = "/app"
PACKAGES_DIR = "/opt/tidal/packages"
KEYS_DIR = "/etc/tidal/keys"
KEYS_FILE = f"{KEYS_DIR}/keys.json"
REGISTRY_DIR = "/registry"
RUN_AS = 10001  # the image's non-root user (see Dockerfile)

# Used when deploymentconfig.json gives no containerResourceRequirements.
DEFAULT_CPU = 0.5
DEFAULT_MEMORY_GB = 1.0

_PROBE_PERIOD_S = 5


@dataclass(frozen=True)
class PodPlan:
    """What the pod runs, worked out by ``render`` from the service's files."""

    name: str
    image: str
    models: tuple[tuple[str, int, str], ...]  # (name, version, root folder or file name)
    repositories: tuple[str, ...]  # triton/ repositories inside the pod
    model_dir: str  # AZUREML_MODEL_DIR
    entry_script: str | None  # path inside the pod; None: plain ``tidal serve``
    app_items: tuple[tuple[str, str], ...]  # ConfigMap key -> path under /app
    pip_packages: tuple[str, ...]
    environment: Mapping[str, str]  # the user's variables (deployment and inference config)
    cpu: float
    memory_gb: float
    gpu: int
    auth: bool
    scoring_timeout_ms: int | None


def pod_spec(plan: PodPlan, options: KubernetesOptions) -> dict[str, Any]:
    """The ``spec`` of the pod template."""
    volumes: list[dict[str, Any]] = [{"name": "tmp", "emptyDir": {}}]
    init: list[dict[str, Any]] = []
    if options.registry_claim is not None and plan.models:
        volumes.append({"name": "models", "emptyDir": {}})
        volumes.append(
            {"name": "registry", "persistentVolumeClaim": {"claimName": options.registry_claim}}
        )
        init += [_fetch_container(plan, options, i, model) for i, model in enumerate(plan.models)]
    if plan.pip_packages:
        volumes.append({"name": "packages", "emptyDir": {}})
        init.append(_packages_container(plan, options))
    if plan.auth:
        volumes.append(
            {
                "name": "keys",
                "secret": {
                    "secretName": f"{plan.name}-keys",
                    "items": [{"key": "keys.json", "path": "keys.json"}],
                    "defaultMode": 0o440,
                },
            }
        )
    if plan.entry_script is not None:
        volumes.append(
            {
                "name": "app",
                "configMap": {
                    "name": f"{plan.name}-app",
                    "items": [{"key": key, "path": path} for key, path in plan.app_items],
                },
            }
        )
    spec: dict[str, Any] = {
        # Service links would put <SERVICE>_PORT=tcp://... variables in the environment: a
        # Service named "tidal-http" would set TIDAL_HTTP_PORT and break the server's settings.
        "enableServiceLinks": False,
        "automountServiceAccountToken": False,
        # preStop drain + tidal's own drain of accepted requests + a margin for the exit itself
        "terminationGracePeriodSeconds": options.drain_delay_secs + options.exit_timeout_secs + 15,
        "securityContext": {
            "runAsNonRoot": True,
            "runAsUser": RUN_AS,
            "runAsGroup": RUN_AS,
            "fsGroup": RUN_AS,
            "seccompProfile": {"type": "RuntimeDefault"},
        },
    }
    if init:
        spec["initContainers"] = init
    spec["containers"] = [_main_container(plan, options)]
    spec["volumes"] = volumes
    if plan.gpu:
        # GPU node pools are usually tainted so that only pods asking for GPUs land there.
        spec["tolerations"] = [
            {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}
        ]
    return spec


def _main_container(plan: PodPlan, options: KubernetesOptions) -> dict[str, Any]:
    scoring = plan.entry_script is not None
    env = _server_env(plan, options)
    if scoring:
        command, ports = _score_command(plan), [_port("http", SCORING_PORT)]
        if plan.repositories:
            ports.append(_port("metrics", METRICS_PORT))
        live = ready = "/"  # the scoring server's health route, open without a key
    else:
        command = ["tidal", "serve"]
        ports = [_port("http", HTTP_PORT), _port("grpc", GRPC_PORT), _port("metrics", METRICS_PORT)]
        live, ready = "/v2/health/live", "/v2/health/ready"
    mounts: list[dict[str, Any]] = [{"name": "tmp", "mountPath": "/tmp"}]
    if options.registry_claim is not None and plan.models:
        mounts.append({"name": "models", "mountPath": MODELS_DIR, "readOnly": True})
    if plan.auth:
        mounts.append({"name": "keys", "mountPath": KEYS_DIR, "readOnly": True})
    if scoring:
        mounts.append({"name": "app", "mountPath": APP_DIR, "readOnly": True})
    if plan.pip_packages:
        mounts.append({"name": "packages", "mountPath": PACKAGES_DIR, "readOnly": True})
    return {
        "name": "tidal",
        "image": plan.image,
        "imagePullPolicy": options.image_pull_policy,
        "command": command,
        "env": [{"name": key, "value": value} for key, value in env.items()],
        "ports": ports,
        # Until the models are loaded (ready) neither liveness nor readiness is asked, so a
        # slow load is not mistaken for a hung server; after that, liveness only restarts a
        # server that stopped answering, and readiness follows the models.
        "startupProbe": _probe(
            ready, math.ceil(options.startup_timeout_secs / _PROBE_PERIOD_S), _PROBE_PERIOD_S
        ),
        "livenessProbe": _probe(live, 3, 10),
        "readinessProbe": _probe(ready, 2, _PROBE_PERIOD_S),
        "lifecycle": {
            # Endpoints and load balancers drop a terminating pod a little after it is marked;
            # keep serving until then, then SIGTERM starts tidal's drain.
            "preStop": {"exec": {"command": ["sleep", str(options.drain_delay_secs)]}}
        },
        "resources": _resources(plan),
        "securityContext": _container_security(),
        "volumeMounts": mounts,
    }


def _server_env(plan: PodPlan, options: KubernetesOptions) -> dict[str, str]:
    env: dict[str, str] = {}
    if plan.entry_script is None:
        env["TIDAL_MODEL_REPOSITORY"] = ":".join(plan.repositories)
        if plan.auth:
            env["TIDAL_AUTH_KEYS_FILE"] = KEYS_FILE
    else:
        # tidal score's inference server is for the entry script only: loopback, no key.
        env["TIDAL_HTTP_ADDRESS"] = "127.0.0.1"
        env["TIDAL_GRPC_ADDRESS"] = "127.0.0.1"
        env["TIDAL_METRICS_ADDRESS"] = "0.0.0.0"
        env["AZUREML_MODEL_DIR"] = plan.model_dir
        if plan.scoring_timeout_ms is not None:
            env["SCORING_TIMEOUT_MS"] = str(plan.scoring_timeout_ms)
    env["TIDAL_HTTP_PORT"] = str(HTTP_PORT)
    env["TIDAL_GRPC_PORT"] = str(GRPC_PORT)
    env["TIDAL_METRICS_PORT"] = str(METRICS_PORT)
    env["TIDAL_EXIT_TIMEOUT_SECS"] = str(options.exit_timeout_secs)
    if plan.pip_packages:
        env["PYTHONPATH"] = PACKAGES_DIR
    for key, value in plan.environment.items():
        env.setdefault(key, value)  # tidal's own wiring wins over a user's variable
    return env


def _score_command(plan: PodPlan) -> list[str]:
    assert plan.entry_script is not None
    command = ["tidal", "score", "--entry-script", plan.entry_script]
    command += ["--model-dir", plan.model_dir, "--port", str(SCORING_PORT)]
    for repository in plan.repositories:
        command += ["--model-repository", repository]
    if plan.auth:
        command += ["--auth-keys-file", KEYS_FILE]
    return command


def _fetch_container(
    plan: PodPlan, options: KubernetesOptions, index: int, model: tuple[str, int, str]
) -> dict[str, Any]:
    name, version, root = model
    target = f"{MODELS_DIR}/{name}/{version}"
    return {
        "name": f"fetch-model-{index}",
        "image": plan.image,
        "imagePullPolicy": options.image_pull_policy,
        # Init containers run again when a pod restarts whole, over the same emptyDir: a model
        # already there is kept. Values are positional parameters, never spliced into the script.
        "command": [
            "sh",
            "-c",
            'test -e "$1" || exec tidal model download "$2" -t "$3"',
            "fetch-model",
            str(PurePosixPath(target) / root),
            f"{name}:{version}",
            target,
        ],
        "env": [{"name": "TIDAL_HOME", "value": REGISTRY_DIR}],
        "securityContext": _container_security(),
        "volumeMounts": [
            {"name": "registry", "mountPath": REGISTRY_DIR},
            {"name": "models", "mountPath": MODELS_DIR},
            {"name": "tmp", "mountPath": "/tmp"},
        ],
    }


def _packages_container(plan: PodPlan, options: KubernetesOptions) -> dict[str, Any]:
    return {
        "name": "install-packages",
        "image": plan.image,
        "imagePullPolicy": options.image_pull_policy,
        "command": [
            "python",
            "-m",
            "pip",
            "install",
            "--no-cache-dir",
            "--disable-pip-version-check",
            "--target",
            PACKAGES_DIR,
            *plan.pip_packages,
        ],
        "env": [{"name": "HOME", "value": "/tmp"}],
        "securityContext": _container_security(),
        "volumeMounts": [
            {"name": "packages", "mountPath": PACKAGES_DIR},
            {"name": "tmp", "mountPath": "/tmp"},
        ],
    }


def _port(name: str, number: int) -> dict[str, Any]:
    return {"name": name, "containerPort": number, "protocol": "TCP"}


def _probe(path: str, failures: int, period: int) -> dict[str, Any]:
    return {
        "httpGet": {"path": path, "port": "http"},
        "periodSeconds": period,
        "timeoutSeconds": 2,
        "failureThreshold": failures,
    }


def _resources(plan: PodPlan) -> dict[str, Any]:
    # Requests equal to limits: the Guaranteed QoS class, so an inference pod is the last to be
    # evicted and can be given whole cores by the CPU manager.
    amounts: dict[str, str | int] = {
        "cpu": f"{max(1, round(plan.cpu * 1000))}m",
        "memory": f"{max(1, round(plan.memory_gb * 1024))}Mi",
    }
    if plan.gpu:
        amounts["nvidia.com/gpu"] = plan.gpu  # extended resources: requests must equal limits
    return {"requests": dict(amounts), "limits": dict(amounts)}


def _container_security() -> dict[str, Any]:
    return {
        "allowPrivilegeEscalation": False,
        "readOnlyRootFilesystem": True,
        "runAsNonRoot": True,
        "capabilities": {"drop": ["ALL"]},
    }
