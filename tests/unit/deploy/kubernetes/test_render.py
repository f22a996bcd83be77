"""The rendered objects: golden files, and the facts the issue asks of them."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tidal.deploy.kubernetes import KubernetesOptions, RenderError, render, to_json, to_yaml
from tidal.deploy.kubernetes.app import CONFIGMAP_LIMIT
from tidal.deploy.specs import DeploymentSpec, InferenceSpec

from .examples import (
    GOLDEN,
    KEYS,
    REGENERATE,
    autoscaled_objects,
    load_yaml_stream,
    model,
    scoring_objects,
    serve_objects,
    write_app,
)


def _by_kind(objects: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    kinds = [o["kind"] for o in objects]
    assert len(kinds) == len(set(kinds)), kinds
    return {o["kind"]: o for o in objects}


def _golden(name: str, objects: list[dict[str, Any]]) -> None:
    path = GOLDEN / name
    text = to_yaml(objects)
    if REGENERATE:
        path.write_text(text)
    assert path.exists(), f"{path} is missing: run with TIDAL_REGENERATE_GOLDEN=1"
    assert text == path.read_text(), f"{name} changed: check it, then TIDAL_REGENERATE_GOLDEN=1"
    assert load_yaml_stream(text) == objects  # the YAML says exactly what was rendered


def test_golden_serve() -> None:
    _golden("serve.yaml", serve_objects())


def test_golden_scoring(tmp_path: Path) -> None:
    _golden("scoring.yaml", scoring_objects(write_app(tmp_path)))


def test_golden_autoscaled() -> None:
    _golden("autoscaled.yaml", autoscaled_objects())


def test_kinds_and_order() -> None:
    kinds = [o["kind"] for o in serve_objects()]
    assert kinds == [
        "Secret",
        "Deployment",
        "Service",
        "HorizontalPodAutoscaler",
        "PodDisruptionBudget",
    ]


def _check_consistent(objects: list[dict[str, Any]]) -> None:
    """Selectors pick the pods, ports and volumes point at things that exist."""
    kinds = _by_kind(objects)
    deployment = kinds["Deployment"]
    pod = deployment["spec"]["template"]
    pod_labels = pod["metadata"]["labels"]
    selector = deployment["spec"]["selector"]["matchLabels"]
    assert selector.items() <= pod_labels.items()
    assert kinds["Service"]["spec"]["selector"] == selector
    assert kinds["PodDisruptionBudget"]["spec"]["selector"]["matchLabels"] == selector
    container = pod["spec"]["containers"][0]
    port_names = {p["name"] for p in container["ports"]}
    for port in kinds["Service"]["spec"]["ports"]:
        assert port["targetPort"] in port_names
    for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
        assert container[probe]["httpGet"]["port"] in port_names
    volumes = {v["name"]: v for v in pod["spec"]["volumes"]}
    for c in pod["spec"].get("initContainers", []) + pod["spec"]["containers"]:
        for mount in c["volumeMounts"]:
            assert mount["name"] in volumes
    for volume in volumes.values():
        if "secret" in volume:
            assert volume["secret"]["secretName"] == kinds["Secret"]["metadata"]["name"]
        if "configMap" in volume:
            config_map = kinds["ConfigMap"]
            keys = set(config_map.get("data", {})) | set(config_map.get("binaryData", {}))
            assert {i["key"] for i in volume["configMap"]["items"]} == keys
    if "HorizontalPodAutoscaler" in kinds:
        target = kinds["HorizontalPodAutoscaler"]["spec"]["scaleTargetRef"]
        assert (target["kind"], target["name"]) == ("Deployment", deployment["metadata"]["name"])
        assert "replicas" not in deployment["spec"]  # the HPA owns the count
    names = {o["metadata"].get("namespace") for o in objects}
    assert len(names) == 1


def test_objects_are_consistent(tmp_path: Path) -> None:
    for objects in (serve_objects(), scoring_objects(write_app(tmp_path)), autoscaled_objects()):
        _check_consistent(objects)


def test_serve_pod_contract() -> None:
    kinds = _by_kind(serve_objects())
    deployment = kinds["Deployment"]
    spec = deployment["spec"]
    assert spec["strategy"] == {
        "type": "RollingUpdate",
        "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1},
    }
    pod = spec["template"]["spec"]
    container = pod["containers"][0]
    assert container["command"] == ["tidal", "serve"]
    env = {e["name"]: e["value"] for e in container["env"]}
    assert env["TIDAL_MODEL_REPOSITORY"] == "/models/m1/1/models/triton"
    assert env["TIDAL_AUTH_KEYS_FILE"] == "/etc/tidal/keys/keys.json"
    exit_timeout = int(env["TIDAL_EXIT_TIMEOUT_SECS"])
    pre_stop = int(container["lifecycle"]["preStop"]["exec"]["command"][1])
    assert pod["terminationGracePeriodSeconds"] > pre_stop + exit_timeout
    assert container["livenessProbe"]["httpGet"]["path"] == "/v2/health/live"
    assert container["readinessProbe"]["httpGet"]["path"] == "/v2/health/ready"
    startup = container["startupProbe"]
    assert startup["httpGet"]["path"] == "/v2/health/ready"  # covers the model load
    assert startup["periodSeconds"] * startup["failureThreshold"] >= 600
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] != 0
    assert container["securityContext"]["allowPrivilegeEscalation"] is False
    assert pod["enableServiceLinks"] is False  # no <SERVICE>_PORT clashing with TIDAL_*
    assert {p["name"]: p["containerPort"] for p in container["ports"]} == {
        "http": 8000,
        "grpc": 8001,
        "metrics": 8002,
    }
    fetch = pod["initContainers"][0]
    assert fetch["command"][-2:] == ["m1:1", "/models/m1/1"]
    assert "tidal model download" in fetch["command"][2]
    assert {"name": "TIDAL_HOME", "value": "/registry"} in fetch["env"]
    registry = next(v for v in pod["volumes"] if v["name"] == "registry")
    assert registry["persistentVolumeClaim"]["claimName"] == "tidal-registry"
    service_ports = {p["name"] for p in kinds["Service"]["spec"]["ports"]}
    assert service_ports == {"http", "grpc", "metrics"}


def test_secret_holds_only_digests() -> None:
    secret = _by_kind(serve_objects())["Secret"]
    text = secret["stringData"]["keys.json"]
    assert KEYS.primary_sha256 in text and KEYS.secondary_sha256 in text
    assert "example-primary-key" not in text


def test_resources_and_gpu(tmp_path: Path) -> None:
    kinds = _by_kind(scoring_objects(write_app(tmp_path)))
    pod = kinds["Deployment"]["spec"]["template"]["spec"]
    resources = pod["containers"][0]["resources"]
    assert resources["requests"] == {"cpu": "2000m", "memory": "4096Mi", "nvidia.com/gpu": 1}
    assert resources["limits"] == resources["requests"]
    assert pod["tolerations"][0]["key"] == "nvidia.com/gpu"
    assert kinds["Deployment"]["spec"]["replicas"] == 2
    assert "HorizontalPodAutoscaler" not in kinds  # numReplicas: a fixed count


def test_scoring_pod(tmp_path: Path) -> None:
    kinds = _by_kind(scoring_objects(write_app(tmp_path)))
    pod = kinds["Deployment"]["spec"]["template"]["spec"]
    container = pod["containers"][0]
    assert container["command"][:2] == ["tidal", "score"]
    assert container["command"][container["command"].index("--entry-script") + 1] == (
        "/app/score.py"
    )
    assert "--model-repository" in container["command"]  # bert is a Multi model
    env = {e["name"]: e["value"] for e in container["env"]}
    assert env["AZUREML_MODEL_DIR"] == "/models"  # two models
    assert env["WORKER_COUNT"] == "2" and env["EXTRA"] == "1"
    assert env["SCORING_TIMEOUT_MS"] == "5000"
    assert env["TIDAL_HTTP_ADDRESS"] == "127.0.0.1"  # the inference server stays private
    assert "TIDAL_AUTH_KEYS_FILE" not in env
    assert container["ports"][0] == {"name": "http", "containerPort": 5001, "protocol": "TCP"}
    assert "initContainers" in pod and pod["initContainers"][0]["name"] == "install-packages"
    assert pod["initContainers"][0]["command"][-1] == "nltk==3.9.1"
    config_map = kinds["ConfigMap"]
    assert set(config_map["data"]) == {"score.py", "lib__helpers.py"}
    assert set(config_map["binaryData"]) == {"lib__table.bin"}
    items = next(v for v in pod["volumes"] if v["name"] == "app")["configMap"]["items"]
    assert {"key": "lib__helpers.py", "path": "lib/helpers.py"} in items
    assert {p["name"] for p in kinds["Service"]["spec"]["ports"]} == {"http", "metrics"}
    assert kinds["Deployment"]["metadata"]["namespace"] == "ml"


def test_app_change_rolls_the_pods(tmp_path: Path) -> None:
    source = write_app(tmp_path)
    before = _by_kind(scoring_objects(source))["Deployment"]
    (source / "lib" / "helpers.py").write_text("SCALE = 3\n")
    after = _by_kind(scoring_objects(source))["Deployment"]
    key = "tidal/app-sha256"
    assert (
        before["spec"]["template"]["metadata"]["annotations"][key]
        != (after["spec"]["template"]["metadata"]["annotations"][key])
    )


def test_autoscaler_fields() -> None:
    kinds = _by_kind(autoscaled_objects())
    hpa = kinds["HorizontalPodAutoscaler"]["spec"]
    assert (hpa["minReplicas"], hpa["maxReplicas"]) == (2, 6)
    assert hpa["metrics"][0]["resource"]["target"] == {
        "type": "Utilization",
        "averageUtilization": 60,
    }
    assert hpa["metrics"][1]["pods"]["metric"]["name"] == "tidal_inference_queue_duration_seconds"
    assert hpa["metrics"][1]["pods"]["target"]["averageValue"] == "50m"
    assert "Secret" not in kinds  # authEnabled: false
    assert kinds["Service"]["spec"]["type"] == "LoadBalancer"


def test_autoscale_disabled_gives_fixed_replicas() -> None:
    objects = render(
        "svc",
        [model()],
        inference=None,
        deployment=DeploymentSpec(compute_type="kubernetes", autoscale_enabled=False),
        keys_hashed=KEYS,
    )
    kinds = _by_kind(objects)
    assert "HorizontalPodAutoscaler" not in kinds
    assert kinds["Deployment"]["spec"]["replicas"] == 1


def test_gpu_picks_the_cuda_image() -> None:
    objects = render(
        "svc",
        [model()],
        inference=None,
        deployment=DeploymentSpec(compute_type="kubernetes", gpu=2),
        keys_hashed=KEYS,
    )
    container = _by_kind(objects)["Deployment"]["spec"]["template"]["spec"]["containers"][0]
    assert container["image"].endswith("-cuda")
    assert not container["image"].endswith(":latest")


def test_json_output_is_a_list() -> None:
    import json

    document = json.loads(to_json(serve_objects()))
    assert document["kind"] == "List" and len(document["items"]) == 5


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"name": "Bad_Name"}, "cannot name Kubernetes objects"),
        ({"name": "x" * 60}, "cannot name Kubernetes objects"),
        ({"keys_hashed": None}, "no key digests"),
        ({"models": []}, "at least one model"),
        ({"models": [model(framework="Onnx")]}, "must hold a Triton repository"),
        (
            {"deployment": DeploymentSpec(replicas=2, autoscale_enabled=True)},
            "numReplicas cannot be combined",
        ),
        ({"deployment": DeploymentSpec(min_replicas=5, max_replicas=3)}, "must not exceed"),
    ],
)
def test_render_errors(kwargs: dict[str, Any], message: str) -> None:
    arguments: dict[str, Any] = {
        "name": "svc",
        "models": [model()],
        "inference": None,
        "deployment": DeploymentSpec(),
        "keys_hashed": KEYS,
    }
    arguments.update(kwargs)
    name, models = arguments.pop("name"), arguments.pop("models")
    with pytest.raises(RenderError, match=message):
        render(name, models, **arguments)


def test_options_refuse_latest_and_bad_values() -> None:
    with pytest.raises(RenderError, match="fixed tag"):
        KubernetesOptions(image="tidal:latest")
    with pytest.raises(RenderError, match="service type"):
        KubernetesOptions(service_type="Ingress")
    with pytest.raises(RenderError, match="namespace"):
        KubernetesOptions(namespace="Not/Valid")


def test_too_large_source_folder(tmp_path: Path) -> None:
    source = tmp_path / "big"
    source.mkdir()
    (source / "score.py").write_text("def init(): pass\ndef run(x): return x\n")
    (source / "weights.bin").write_bytes(b"\1" * (CONFIGMAP_LIMIT + 1))
    inference = InferenceSpec(entry_script="score.py", source_directory=source)
    with pytest.raises(RenderError, match="bake it into the image"):
        render("svc", [model()], inference=inference, deployment=DeploymentSpec(), keys_hashed=KEYS)
