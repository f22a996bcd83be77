"""A tidal service as Kubernetes objects: Deployment, Service, Secret, HPA, PodDisruptionBudget
(and a ConfigMap holding an entry script's source folder).

Pure: reads the registry records and the service's files, writes nothing, calls no cluster.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from tidal import __version__
from tidal.deploy.kubernetes.app import AppFiles, collect_app
from tidal.deploy.kubernetes.options import KubernetesOptions, RenderError, check_name
from tidal.deploy.kubernetes.pod import (
    APP_DIR,
    DEFAULT_CPU,
    DEFAULT_MEMORY_GB,
    GRPC_PORT,
    METRICS_PORT,
    MODELS_DIR,
    PodPlan,
    pod_spec,
)

if TYPE_CHECKING:
    from tidal.deploy.specs import DeploymentSpec, InferenceSpec
    from tidal.registry import ModelVersion
    from tidal.security.keys import KeyHashes

__all__ = ["QUEUE_METRIC", "labels_for", "render", "selector_for"]

# Azure's AKS defaults for the autoScaler block.
DEFAULT_MIN_REPLICAS = 1
DEFAULT_MAX_REPLICAS = 10
DEFAULT_TARGET_UTILIZATION = 70
# The per-pod metric a metrics adapter derives from tidal's queue-time histogram (see
# docs/kubernetes.md for an adapter rule): mean seconds a request waited in the queue.
QUEUE_METRIC = "tidal_inference_queue_duration_seconds"


def selector_for(name: str) -> dict[str, str]:
    """The labels that pick a service's pods (and every object ``delete`` removes)."""
    return {"app.kubernetes.io/name": "tidal", "app.kubernetes.io/instance": name}


def labels_for(name: str, scoring: bool) -> dict[str, str]:
    """Every object's labels: the selector plus version, component and manager."""
    return {
        **selector_for(name),
        "app.kubernetes.io/version": __version__,
        "app.kubernetes.io/component": "scoring-server" if scoring else "inference-server",
        "app.kubernetes.io/managed-by": "tidal",
    }


def render(
    name: str,
    models: Sequence[ModelVersion],
    *,
    inference: InferenceSpec | None,
    deployment: DeploymentSpec,
    image: str | None = None,
    keys_hashed: KeyHashes | None = None,
    namespace: str | None = None,
    options: KubernetesOptions | None = None,
    repositories: Mapping[str, str | None] | None = None,
) -> list[dict[str, Any]]:
    """The objects of service ``name``, in the order ``kubectl apply`` should create them.

    ``image`` and ``namespace`` override the ones in ``options``. ``keys_hashed`` is required
    when ``deployment.auth_enabled``. ``repositories`` maps a model id to where its Triton
    repository sits inside the model (``tidal.deploy.model_layout.triton_subpath``); without
    it every Multi folder is taken to hold ``triton/``. Raises ``RenderError`` saying what
    cannot be rendered.
    """
    check_name(name)
    options = options or KubernetesOptions()
    if image is not None or namespace is not None:
        options = dataclasses.replace(
            options,
            image=image if image is not None else options.image,
            namespace=namespace if namespace is not None else options.namespace,
        )
    if deployment.auth_enabled and keys_hashed is None:
        raise RenderError("authEnabled is true but no key digests were given")
    app = collect_app(inference.source_directory, inference.entry_script) if inference else None
    plan = _plan(name, models, inference, deployment, options, app, repositories)
    labels = labels_for(name, plan.entry_script is not None)
    meta = _meta_factory(options.namespace, labels)

    objects: list[dict[str, Any]] = []
    pod_annotations: dict[str, str] = {}
    if plan.auth:
        assert keys_hashed is not None
        keys_json = json.dumps(keys_hashed.to_json(), indent=2) + "\n"
        objects.append(_secret(meta(f"{name}-keys"), keys_json))
        pod_annotations["tidal/keys-sha256"] = hashlib.sha256(keys_json.encode()).hexdigest()
    if app is not None:
        objects.append(_config_map(meta(f"{name}-app"), app))
        pod_annotations["tidal/app-sha256"] = app.sha256
    scaler = _autoscaler(deployment)
    objects.append(
        _deployment(
            meta(name), plan, options, labels, pod_annotations, scaler, deployment.replicas or 1
        )
    )
    objects.append(_service(meta(name), plan, options))
    if scaler is not None:
        objects.append(_hpa(meta(name), name, scaler, options))
    objects.append(_pdb(meta(name), name))
    return objects


def _repository_subpath(
    model: ModelVersion, layouts: Mapping[str, str | None] | None
) -> str | None:
    """Where ``model`` keeps its Triton repository; None when it holds none."""
    if not model.is_dir:
        return None
    if layouts is not None:
        return layouts.get(model.id)
    return "triton" if model.framework == "Multi" else None  # Azure's layout


def _plan(
    name: str,
    models: Sequence[ModelVersion],
    inference: InferenceSpec | None,
    deployment: DeploymentSpec,
    options: KubernetesOptions,
    app: AppFiles | None,
    layouts: Mapping[str, str | None] | None,
) -> PodPlan:
    if not models:
        raise RenderError("a service needs at least one model (-m NAME:VERSION)")
    placed = tuple((m.name, m.version, m.root_name) for m in models)
    subpaths = {m.id: _repository_subpath(m, layouts) for m in models}
    repositories = tuple(
        f"{MODELS_DIR}/{m.name}/{m.version}/{m.root_name}" + (f"/{sub}" if sub else "")
        for m in models
        if (sub := subpaths[m.id]) is not None
    )
    if inference is None and len(repositories) != len(models):
        plain = [m.id for m in models if subpaths[m.id] is None]
        raise RenderError(
            "without an inference config every model must hold a Triton repository (a "
            f"triton/ folder, or model folders at its top); {', '.join(plain)} does not: "
            "give an entry script with --ic"
        )
    # AZUREML_MODEL_DIR: the one model's version folder, or the root when there are several.
    model_dir = (
        f"{MODELS_DIR}/{models[0].name}/{models[0].version}" if len(models) == 1 else MODELS_DIR
    )
    env = dict(deployment.environment_variables)
    packages: tuple[str, ...] = ()
    entry = None
    if inference is not None:
        assert app is not None
        if inference.environment is not None:
            env = {**inference.environment.environment_variables, **env}
            packages = inference.environment.pip_packages
        script = inference.entry_script if inference.source_directory is not None else None
        entry = f"{APP_DIR}/{script or app.items[0][1]}"
    return PodPlan(
        name=name,
        image=options.image_for(deployment.gpu),
        models=placed,
        repositories=repositories,
        model_dir=model_dir,
        entry_script=entry,
        app_items=app.items if app is not None else (),
        pip_packages=packages,
        environment=env,
        cpu=deployment.cpu if deployment.cpu is not None else DEFAULT_CPU,
        memory_gb=deployment.memory_gb if deployment.memory_gb is not None else DEFAULT_MEMORY_GB,
        gpu=deployment.gpu,
        auth=deployment.auth_enabled,
        scoring_timeout_ms=deployment.scoring_timeout_ms,
    )


def _meta_factory(namespace: str | None, labels: dict[str, str]) -> Any:
    def meta(object_name: str) -> dict[str, Any]:
        metadata: dict[str, Any] = {"name": object_name}
        if namespace is not None:
            metadata["namespace"] = namespace
        metadata["labels"] = dict(labels)
        return metadata

    return meta


def _secret(metadata: dict[str, Any], keys_json: str) -> dict[str, Any]:
    # Only the SHA-256 digests: the plain keys are printed once by tidal deploy, never stored.
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": metadata,
        "type": "Opaque",
        "stringData": {"keys.json": keys_json},
    }


def _config_map(metadata: dict[str, Any], app: AppFiles) -> dict[str, Any]:
    config_map: dict[str, Any] = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": metadata}
    if app.data:
        config_map["data"] = app.data
    if app.binary_data:
        config_map["binaryData"] = app.binary_data
    return config_map


def _autoscaler(deployment: DeploymentSpec) -> tuple[int, int, int] | None:
    """(min, max, target %) when the HPA manages the replica count, else None."""
    enabled = deployment.autoscale_enabled
    if enabled is None:  # Azure: autoscaling unless a fixed replica count is asked
        enabled = deployment.replicas is None
    if not enabled:
        return None
    if deployment.replicas is not None and deployment.autoscale_enabled:
        raise RenderError("numReplicas cannot be combined with autoScaler.autoscaleEnabled: true")
    low = deployment.min_replicas or DEFAULT_MIN_REPLICAS
    high = deployment.max_replicas or max(low, DEFAULT_MAX_REPLICAS)
    if low > high:
        raise RenderError(
            f"autoScaler.minReplicas ({low}) must not exceed autoScaler.maxReplicas ({high})"
        )
    return low, high, deployment.target_utilization or DEFAULT_TARGET_UTILIZATION


def _deployment(
    metadata: dict[str, Any],
    plan: PodPlan,
    options: KubernetesOptions,
    labels: dict[str, str],
    pod_annotations: dict[str, str],
    scaler: tuple[int, int, int] | None,
    replicas: int,
) -> dict[str, Any]:
    metadata["annotations"] = {"tidal/models": ",".join(f"{n}:{v}" for n, v, _ in plan.models)}
    annotations = dict(pod_annotations)
    if plan.repositories:
        annotations.update(
            {
                "prometheus.io/scrape": "true",
                "prometheus.io/port": str(METRICS_PORT),
                "prometheus.io/path": "/metrics",
            }
        )
    spec: dict[str, Any] = {}
    if scaler is None:  # with an HPA the replica count is its to set; apply must not reset it
        spec["replicas"] = replicas
    spec.update(
        {
            "revisionHistoryLimit": 5,
            "progressDeadlineSeconds": options.startup_timeout_secs + 60,
            "selector": {"matchLabels": selector_for(plan.name)},
            "strategy": {
                # A new pod must be ready before an old one goes: capacity never drops.
                "type": "RollingUpdate",
                "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1},
            },
            "template": {
                "metadata": {"labels": dict(labels), "annotations": annotations},
                "spec": pod_spec(plan, options),
            },
        }
    )
    return {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": metadata, "spec": spec}


def _service(metadata: dict[str, Any], plan: PodPlan, options: KubernetesOptions) -> dict[str, Any]:
    ports = [_service_port("http", options.http_service_port)]
    if plan.entry_script is None:
        ports.append(_service_port("grpc", GRPC_PORT))
    if plan.repositories:
        ports.append(_service_port("metrics", METRICS_PORT))
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": metadata,
        "spec": {"type": options.service_type, "selector": selector_for(plan.name), "ports": ports},
    }


def _service_port(name: str, port: int) -> dict[str, Any]:
    return {"name": name, "port": port, "targetPort": name, "protocol": "TCP"}


def _hpa(
    metadata: dict[str, Any], name: str, scaler: tuple[int, int, int], options: KubernetesOptions
) -> dict[str, Any]:
    low, high, target = scaler
    metrics: list[dict[str, Any]] = [
        {
            "type": "Resource",
            "resource": {
                "name": "cpu",
                "target": {"type": "Utilization", "averageUtilization": target},
            },
        }
    ]
    if options.queue_time_target_ms is not None:
        metrics.append(
            {
                "type": "Pods",
                "pods": {
                    "metric": {"name": QUEUE_METRIC},
                    "target": {
                        "type": "AverageValue",
                        "averageValue": f"{options.queue_time_target_ms}m",  # milli-seconds
                    },
                },
            }
        )
    return {
        "apiVersion": "autoscaling/v2",
        "kind": "HorizontalPodAutoscaler",
        "metadata": metadata,
        "spec": {
            "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": name},
            "minReplicas": low,
            "maxReplicas": high,
            "metrics": metrics,
        },
    }


def _pdb(metadata: dict[str, Any], name: str) -> dict[str, Any]:
    # maxUnavailable rather than minAvailable: a one-replica service can still be drained off
    # a node, while a voluntary disruption never takes more than one pod at a time.
    return {
        "apiVersion": "policy/v1",
        "kind": "PodDisruptionBudget",
        "metadata": metadata,
        "spec": {"maxUnavailable": 1, "selector": {"matchLabels": selector_for(name)}},
    }
