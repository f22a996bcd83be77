"""Every rendered object against the Kubernetes schemas, strict (no unknown fields), for each
minor version in K8S_VERSIONS, with kubernetes-validate's bundled schemas (offline)."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest

from .examples import (
    K8S_VERSIONS,
    autoscaled_objects,
    scoring_objects,
    serve_objects,
    validate_all,
    write_app,
)


def test_bundled_versions_cover_the_range() -> None:
    from kubernetes_validate import utils

    bundled = {".".join(v.split(".")[:2]) for v in utils.all_versions()}
    assert set(K8S_VERSIONS) <= bundled


@pytest.mark.parametrize("variant", ["serve", "scoring", "autoscaled"])
def test_rendered_objects_are_valid(variant: str, tmp_path: Path) -> None:
    objects = {
        "serve": serve_objects,
        "scoring": lambda: scoring_objects(write_app(tmp_path)),
        "autoscaled": autoscaled_objects,
    }[variant]()
    validate_all(objects)


def test_strict_validation_catches_mistakes() -> None:
    """The check can fail: an unknown field, a wrong type and a missing field are refused."""
    deployment = next(o for o in serve_objects() if o["kind"] == "Deployment")
    unknown = copy.deepcopy(deployment)
    unknown["spec"]["template"]["spec"]["containers"][0]["livenesProbe"] = {}
    wrong_type = copy.deepcopy(deployment)
    wrong_type["spec"]["strategy"]["rollingUpdate"]["maxUnavailable"] = [0]
    missing = copy.deepcopy(deployment)
    del missing["spec"]["selector"]
    for broken in (unknown, wrong_type, missing):
        with pytest.raises(AssertionError, match="is invalid for Kubernetes"):
            validate_all([broken])
