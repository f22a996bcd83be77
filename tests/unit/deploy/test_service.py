"""``ServiceManager`` checks that refuse a deployment before any process starts."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from tidal.deploy.service import ServiceError, ServiceManager
from tidal.deploy.specs import DeploymentSpec
from tidal.registry import ModelRegistry


@pytest.fixture
def manager(tmp_path: Path) -> ServiceManager:
    return ServiceManager(tmp_path / "home")


@pytest.fixture
def plain_model(manager: ServiceManager, tmp_path: Path) -> str:
    folder = tmp_path / "plain"
    folder.mkdir()
    (folder / "weights.bin").write_bytes(b"\0" * 8)
    return ModelRegistry(manager.home).register("plain", folder).id


@pytest.mark.parametrize("name", ["", "-lead", "has space", "x" * 256, "a/b"])
def test_invalid_names(manager: ServiceManager, name: str) -> None:
    with pytest.raises(ServiceError, match="invalid service name") as caught:
        manager.deploy(name, ["m:1"])
    assert caught.value.kind == "invalid"


def test_unknown_model_and_service(manager: ServiceManager) -> None:
    with pytest.raises(ServiceError) as caught:
        manager.deploy("svc", ["nothing:1"])
    assert caught.value.kind == "not_found"
    for call in (manager.get, manager.keys, manager.delete, manager.logs):
        with pytest.raises(ServiceError, match="service 'svc' not found"):
            call("svc")
    assert manager.list() == []


def test_without_an_inference_config_the_model_needs_triton(
    manager: ServiceManager, plain_model: str
) -> None:
    with pytest.raises(ServiceError, match="holds no Triton model repository"):
        manager.deploy("svc", [plain_model])
    with pytest.raises(ServiceError, match="exactly one model"):
        manager.deploy("svc", [plain_model, plain_model])
    assert manager.list() == []
    assert not (manager.home / "services" / "svc").exists()


def test_port_in_use_is_a_clear_error(manager: ServiceManager, plain_model: str) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        with pytest.raises(ServiceError, match=f"port {port} is not available") as caught:
            manager.deploy("svc", [plain_model], port=port)
    assert caught.value.kind == "in_use"
    assert manager.list() == []


def test_other_compute_types_are_not_local(manager: ServiceManager, plain_model: str) -> None:
    with pytest.raises(ServiceError, match="computeType 'kubernetes'"):
        manager.deploy("svc", [plain_model], deployment=DeploymentSpec(compute_type="kubernetes"))
