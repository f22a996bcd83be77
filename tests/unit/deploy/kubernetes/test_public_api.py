"""The public names of tidal.deploy.kubernetes (what the deploy CLI and the SDK may use)."""

import tidal.deploy.kubernetes as kubernetes


def test_public_names() -> None:
    assert sorted(kubernetes.__all__) == [
        "KubectlError",
        "KubernetesOptions",
        "RenderError",
        "apply",
        "delete",
        "logs",
        "render",
        "show",
        "to_json",
        "to_yaml",
    ]
    for name in kubernetes.__all__:
        assert getattr(kubernetes, name) is not None
