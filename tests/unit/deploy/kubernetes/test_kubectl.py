"""What ``tidal service show --target kubernetes`` makes of the objects the API returns."""

from __future__ import annotations

from typing import Any

from tidal.deploy.kubernetes.kubectl import KINDS, summarize

from .examples import scoring_objects, serve_objects, write_app


def _as_returned(objects: list[dict[str, Any]], status: dict[str, Any], **service_status: Any):
    kinds = {o["kind"]: o for o in objects}
    deployment = dict(kinds["Deployment"], status=status)
    # The API always returns spec.replicas (the HPA's choice when one manages the count).
    deployment["spec"] = dict(deployment["spec"], replicas=2)
    deployment["metadata"] = dict(deployment["metadata"], namespace="default")
    service = dict(kinds["Service"], status=service_status)
    service["metadata"] = dict(service["metadata"], namespace="default")
    return deployment, service


def test_healthy_when_every_replica_is_ready_and_updated() -> None:
    deployment, service = _as_returned(
        serve_objects(), {"replicas": 2, "readyReplicas": 2, "updatedReplicas": 2}
    )
    summary = summarize(deployment, service)
    assert summary["state"] == "Healthy"
    assert summary["models"] == ["m1:1"]
    assert summary["scoringUri"] == "http://svc.default.svc:80"


def test_transitioning_during_a_rollout_and_failed_past_the_deadline() -> None:
    rolling = {"replicas": 2, "readyReplicas": 1, "updatedReplicas": 1}
    deployment, service = _as_returned(serve_objects(), rolling)
    assert summarize(deployment, service)["state"] == "Transitioning"
    stuck = {
        "readyReplicas": 0,
        "conditions": [{"type": "Progressing", "reason": "ProgressDeadlineExceeded"}],
    }
    deployment, service = _as_returned(serve_objects(), stuck)
    assert summarize(deployment, service)["state"] == "Failed"


def test_load_balancer_address_and_score_path(tmp_path) -> None:
    deployment, service = _as_returned(
        scoring_objects(write_app(tmp_path)),
        {"readyReplicas": 2, "updatedReplicas": 2},
        loadBalancer={"ingress": [{"ip": "203.0.113.7"}]},
    )
    summary = summarize(deployment, service)
    assert summary["state"] == "Healthy"
    assert summary["scoringUri"] == "http://203.0.113.7:80/score"


def test_delete_covers_every_rendered_kind(tmp_path) -> None:
    rendered = {o["kind"].lower() for o in scoring_objects(write_app(tmp_path)) + serve_objects()}
    assert rendered <= set(KINDS.split(","))
