"""Parsing and applying --http-restricted-api / --grpc-restricted-protocol (Triton's rules)."""

from __future__ import annotations

import pytest

from tidal.security.restricted import (
    CATEGORIES,
    GRPC_CATEGORIES,
    GrpcRestriction,
    HttpRestriction,
    http_category,
    parse_rules,
)


@pytest.mark.parametrize(
    ("path", "category"),
    [
        ("/v2", "metadata"),
        ("/v2/", "metadata"),
        ("/v2/health/live", "health"),
        ("/v2/health/ready", "health"),
        ("/v2/models/m", "metadata"),
        ("/v2/models/m/versions/3", "metadata"),
        ("/v2/models/m/ready", "health"),
        ("/v2/models/m/versions/3/ready", "health"),
        ("/v2/models/m/config", "model-config"),
        ("/v2/models/m/infer", "inference"),
        ("/v2/models/m/versions/1/infer", "inference"),
        ("/v2/models/m/generate", "inference"),
        ("/v2/models/m/stats", "statistics"),
        ("/v2/models/stats", "statistics"),
        ("/v2/models/m/trace/setting", "trace"),
        ("/v2/trace/setting", "trace"),
        ("/v2/logging", "logging"),
        ("/v2/repository/index", "model-repository"),
        ("/v2/repository/models/m/load", "model-repository"),
        ("/v2/systemsharedmemory/status", "shared-memory"),
        ("/v2/cudasharedmemory/region/r/register", "shared-memory"),
        ("/", None),
        ("/metrics", None),
        ("/v2/models", None),
        ("/v2/models/m/nothing", None),
        ("/v2/unknown", None),
    ],
)
def test_http_categories_are_triton_s(path, category):
    assert http_category(path) == category


def test_every_grpc_rpc_has_a_category():
    assert set(GRPC_CATEGORIES.values()) == set(CATEGORIES)
    assert GRPC_CATEGORIES["/inference.GRPCInferenceService/ModelStreamInfer"] == "inference"
    assert len(GRPC_CATEGORIES) == 20


@pytest.mark.parametrize(
    ("values", "message"),
    [
        (["health"], "option format is '<config name>:<setting>=<value>'. Got health"),
        (["health:k"], "Got health:k"),
        (["health:=v"], "Got health:=v"),
        (["health:k="], "Got health:k="),
        ([":k=v"], "Got :k=v"),
        (["bogus:k=v"], "unknown restricted api 'bogus'"),
        (["health,:k=v"], "unknown restricted api ''"),
        (["health:a=1", "health:b=2"], "restricted api 'health' can not be specified in"),
        (["health,metadata:a=1", "metadata:b=2"], "restricted api 'metadata' can not be"),
    ],
)
def test_unusable_values_are_refused(values, message):
    with pytest.raises(ValueError) as info:
        parse_rules(values, "--http-restricted-api")
    assert message in str(info.value)


def test_a_value_may_hold_colons_and_equals_signs():
    (rule,) = parse_rules(["inference:X-Key=a:b=c"], "--f").values()
    assert (rule.header, rule.value) == ("x-key", b"a:b=c")


def test_http_gate_answers_403_with_triton_s_message():
    gate = HttpRestriction.from_flags(["model-repository,statistics:Admin-Key=s3cret"])
    assert gate is not None
    refusal = gate.check("/v2/repository/index", {})
    assert refusal is not None and refusal.status == 403
    assert refusal.body == b'{"error":"This API is restricted, expecting header \'admin-key\'"}'
    assert gate.check("/v2/repository/index", {"admin-key": "s3cret"}) is None
    assert gate.check("/v2/models/m/stats", {"admin-key": "S3CRET"}) is not None
    assert gate.check("/v2/models/m/infer", {}) is None
    assert HttpRestriction.from_flags([]) is None


def test_http_gate_cache_stays_small():
    gate = HttpRestriction.from_flags(["metadata:k=v"])
    assert gate is not None
    for index in range(3000):
        assert gate.check(f"/v2/models/m{index}", {}) is not None
    assert len(gate._by_path) <= 1024


def test_grpc_refusal_wants_the_prefixed_key():
    restriction = GrpcRestriction.from_flags(["inference:infer-key=abc"])
    assert restriction is not None
    method = "/inference.GRPCInferenceService/ModelInfer"
    expected = "This protocol is restricted, expecting header 'triton-grpc-protocol-infer-key'"
    assert restriction.refusal(method, ()) == expected
    assert restriction.refusal(method, [("infer-key", "abc")]) == expected
    assert restriction.refusal(method, [("triton-grpc-protocol-infer-key", "abd")]) == expected
    assert restriction.refusal(method, [("triton-grpc-protocol-infer-key", "abc")]) is None
    assert restriction.refusal(method, [("triton-grpc-protocol-infer-key", b"abc")]) is None
    assert restriction.refusal("/inference.GRPCInferenceService/ServerLive", None) is None
