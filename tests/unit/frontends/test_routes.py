import pytest

from tidal.core import ErrorCode, InferenceError
from tidal.frontends.http.routes import METHODS, Route, match_route


@pytest.mark.parametrize(
    ("path", "route"),
    [
        ("/v2", Route("server_metadata")),
        ("/v2/", Route("server_metadata")),
        ("/v2/health/live", Route("health_live")),
        ("/v2/health/ready", Route("health_ready")),
        ("/v2/health/ready/", Route("health_ready")),
        ("/v2/models/resnet", Route("model_metadata", "resnet")),
        ("/v2/models/resnet/versions/3", Route("model_metadata", "resnet", 3)),
        ("/v2/models/resnet/ready", Route("model_ready", "resnet")),
        ("/v2/models/resnet/versions/0/ready", Route("model_ready", "resnet", 0)),
        ("/v2/models/resnet/config", Route("model_config", "resnet")),
        ("/v2/models/resnet/versions/12/config", Route("model_config", "resnet", 12)),
        ("/v2/models/resnet/infer", Route("model_infer", "resnet")),
        ("/v2/models/resnet/versions/2/infer", Route("model_infer", "resnet", 2)),
        ("/v2/models/resnet/versions/2/infer/", Route("model_infer", "resnet", 2)),
        ("/v2/models/resnet/stats", Route("model_statistics", "resnet")),
        ("/v2/models/resnet/versions/4/stats", Route("model_statistics", "resnet", 4)),
        ("/v2/models/stats", Route("model_statistics")),
        ("/v2/models/a%20b/infer", Route("model_infer", "a b")),
        ("/v2/models/a%2Fb", Route("model_metadata", "a/b")),
        ("/v2/models/m/versions/007/ready", Route("model_ready", "m", 7)),
        ("/v2/models/m/versions/%31/ready", Route("model_ready", "m", 1)),
    ],
)
def test_known_paths(path, route):
    assert match_route(path) == route


@pytest.mark.parametrize(
    "path",
    [
        "",
        "/",
        "/v1",
        "/v3/models/m",
        "/V2",
        "/v2x",
        "/v2/health",
        "/v2/health/alive",
        "/v2/health/live/now",
        "/v2//health/live",
        "/v2/models",
        "/v2/models/",
        "/v2/models//infer",
        "/v2/model/m",
        "/v2/models/m/predict",
        "/v2/models/m/infer/more",
        "/v2/models/m/versions",
        "/v2/models/m/versions/1/2",
        "/v2/models/m/versions/1/infer/x",
        "/v2/models/m/ready/infer",
    ],
)
def test_unknown_paths(path):
    assert match_route(path) is None


@pytest.mark.parametrize("version", ["x", "-1", "1.5", "+1", " 1", "%2D1", "\u0663", "\u00b2"])
def test_bad_version_in_the_path_is_invalid(version):
    with pytest.raises(InferenceError) as info:
        match_route(f"/v2/models/m/versions/{version}/infer")
    assert info.value.code is ErrorCode.INVALID_ARG
    shown = version.replace("%2D", "-")
    assert info.value.message == (
        f"model 'm': version '{shown}' in the path must be a non-negative integer"
    )


def test_methods():
    assert METHODS == {
        "server_metadata": "GET",
        "health_live": "GET",
        "health_ready": "GET",
        "model_metadata": "GET",
        "model_ready": "GET",
        "model_config": "GET",
        "model_infer": "POST",
        "model_statistics": "GET",
        "repository_index": "POST",
        "repository_load": "POST",
        "repository_unload": "POST",
    }


def test_every_route_name_has_a_method():
    paths = [
        "/v2",
        "/v2/health/live",
        "/v2/health/ready",
        "/v2/models/m",
        "/v2/models/m/ready",
        "/v2/models/m/config",
        "/v2/models/m/infer",
        "/v2/models/m/stats",
        "/v2/repository/index",
        "/v2/repository/models/m/load",
        "/v2/repository/models/m/unload",
    ]
    names = {match_route(p).name for p in paths}
    assert names == set(METHODS)


def test_routes_are_frozen_values():
    assert Route("model_infer", "m", 1) == Route("model_infer", "m", 1)
    assert hash(Route("model_infer", "m")) == hash(Route("model_infer", "m", None))
    with pytest.raises(AttributeError):
        Route("x").name = "y"  # type: ignore[misc]
