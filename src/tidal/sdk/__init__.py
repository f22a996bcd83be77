"""An Azure ML v1-style Python SDK over the local registry and services.

``from tidal.sdk import Workspace, Model, InferenceConfig, Environment, LocalWebservice,
Webservice`` and write what Azure ML users already write; everything lives under the
workspace's home folder (``TIDAL_HOME``). No cloud is involved.
"""

from tidal.sdk._errors import WebserviceException
from tidal.sdk.environment import CondaDependencies, Environment
from tidal.sdk.inference_config import InferenceConfig
from tidal.sdk.model import Model
from tidal.sdk.webservice import LocalWebservice, Webservice
from tidal.sdk.workspace import Workspace

__all__ = [
    "CondaDependencies",
    "Environment",
    "InferenceConfig",
    "LocalWebservice",
    "Model",
    "Webservice",
    "WebserviceException",
    "Workspace",
]
