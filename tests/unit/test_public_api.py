import importlib
import json
import subprocess
import sys

import pytest

import tidal

PUBLIC = {
    "tidal": ["__version__"],
    "tidal.core": [
        "DataType",
        "ErrorCode",
        "InferInput",
        "InferOutput",
        "InferRequest",
        "InferResponse",
        "InferenceError",
        "ModelState",
        "RequestedOutput",
    ],
    "tidal.config": [
        "ConfigError",
        "DynamicBatching",
        "InstanceGroup",
        "ModelConfig",
        "QueuePolicy",
        "ServerSettings",
        "TensorConfig",
        "VersionPolicy",
        "parse_config_text",
        "read_model_config",
    ],
    "tidal.server": ["InferenceServer", "ModelMetadata", "ServerMetadata", "TensorMetadata"],
    "tidal.repository": ["LoadedVersion", "ModelRecord", "ModelRepository", "VersionRecord"],
    "tidal.scheduling": ["DirectScheduler", "InstancePool", "Scheduler"],
    "tidal.backends": ["Backend", "ModelInstance", "backend_name_for", "get_backend"],
    "tidal.registry": [
        "FRAMEWORKS",
        "ModelRegistry",
        "ModelVersion",
        "RegistryError",
        "parse_model_id",
    ],
}


@pytest.mark.parametrize("module_name", sorted(PUBLIC))
def test_all_is_pinned(module_name):
    module = importlib.import_module(module_name)
    assert module.__all__ == PUBLIC[module_name]


@pytest.mark.parametrize("module_name", sorted(PUBLIC))
def test_every_public_name_resolves(module_name):
    module = importlib.import_module(module_name)
    for name in module.__all__:
        assert getattr(module, name) is not None, name


def test_version():
    assert tidal.__version__ == "0.1.0"


def test_public_names_are_the_defining_objects():
    from tidal.config.model_config import ModelConfig
    from tidal.core.errors import InferenceError
    from tidal.scheduling.instance_pool import InstancePool

    assert importlib.import_module("tidal.config").ModelConfig is ModelConfig
    assert importlib.import_module("tidal.core").InferenceError is InferenceError
    assert importlib.import_module("tidal.scheduling").InstancePool is InstancePool


_IMPORT_PROBE = """
import json, sys
import tidal
after_tidal = sorted(m for m in ("numpy", "onnxruntime", "uvicorn", "google.protobuf")
                     if m in sys.modules)
import tidal.core, tidal.config, tidal.server, tidal.repository, tidal.scheduling
import tidal.backends, tidal.cli.main
after_all = sorted(m for m in ("onnxruntime", "uvicorn", "uvloop") if m in sys.modules)
print(json.dumps([after_tidal, after_all]))
"""


def test_imports_stay_light():
    """``import tidal`` loads nothing heavy; the packages load no runtime and no web server."""
    result = subprocess.run(
        [sys.executable, "-c", _IMPORT_PROBE],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    after_tidal, after_all = json.loads(result.stdout)
    assert after_tidal == []
    assert after_all == []
