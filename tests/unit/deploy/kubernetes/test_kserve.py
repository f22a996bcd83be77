"""deploy/kserve/*.yaml against KServe's CRD schemas (vendored in tests/data/kserve)."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[4]
SCHEMAS = ROOT / "tests" / "data" / "kserve"
KSERVE = ROOT / "deploy" / "kserve"


def _strict(node: Any) -> Any:
    """Refuse unknown fields, as the API server's strict field validation does: every object
    schema with declared properties and no x-kubernetes-preserve-unknown-fields gets
    additionalProperties: false."""
    if isinstance(node, list):
        return [_strict(v) for v in node]
    if not isinstance(node, dict):
        return node
    node = {k: _strict(v) for k, v in node.items()}
    if (
        node.get("type") == "object"
        and "properties" in node
        and not node.get("x-kubernetes-preserve-unknown-fields")
        and "additionalProperties" not in node
    ):
        node["additionalProperties"] = False
    return node


def _validator(kind: str, version: str) -> jsonschema.Draft7Validator:
    schema = json.loads((SCHEMAS / f"{kind}-{version}.schema.json").read_text())
    return jsonschema.Draft7Validator(_strict(schema))


def _errors(document: dict[str, Any]) -> list[str]:
    group_version = document["apiVersion"]
    assert group_version.startswith("serving.kserve.io/")
    version = group_version.split("/")[1]
    validator = _validator(document["kind"].lower(), version)
    return [f"{list(e.path)}: {e.message}" for e in validator.iter_errors(document)]


def _load(name: str) -> dict[str, Any]:
    return yaml.safe_load((KSERVE / name).read_text())


@pytest.mark.parametrize("name", ["servingruntime.yaml", "inferenceservice.yaml"])
def test_kserve_objects_match_the_crds(name: str) -> None:
    assert _errors(_load(name)) == []


def test_runtime_facts() -> None:
    runtime = _load("servingruntime.yaml")
    spec = runtime["spec"]
    assert set(spec["protocolVersions"]) == {"v2", "grpc-v2"}
    assert {f["name"] for f in spec["supportedModelFormats"]} >= {"onnx", "pytorch", "triton"}
    container = spec["containers"][0]
    assert container["name"] == "kserve-container"
    assert "--model-repository=/mnt/models" in container["args"]
    assert not container["image"].endswith(":latest") and ":" in container["image"]
    service = _load("inferenceservice.yaml")
    model = service["spec"]["predictor"]["model"]
    assert model["runtime"] == runtime["metadata"]["name"]
    assert model["modelFormat"]["name"] in {f["name"] for f in spec["supportedModelFormats"]}


def test_schema_check_can_fail() -> None:
    runtime = _load("servingruntime.yaml")
    typo = copy.deepcopy(runtime)
    typo["spec"]["protocolVersion"] = typo["spec"].pop("protocolVersions")
    wrong = copy.deepcopy(runtime)
    wrong["spec"]["supportedModelFormats"][0]["priority"] = "high"
    nested = copy.deepcopy(runtime)
    nested["spec"]["containers"][0]["imagePullPolice"] = "Always"
    for broken in (typo, wrong, nested):
        assert _errors(broken), broken["spec"]


def test_vendored_schemas_name_their_source() -> None:
    readme = (SCHEMAS / "README.md").read_text()
    assert "kserve" in readme and "config/crd/full" in readme
