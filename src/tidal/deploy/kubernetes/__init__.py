"""A tidal service on Kubernetes: rendered objects, and kubectl to apply, show, log and delete.

``render`` is pure (no cluster needed); ``apply``/``show``/``logs``/``delete`` run ``kubectl``
against its current context.
"""

from tidal.deploy.kubernetes.kubectl import KubectlError, apply, delete, logs, show
from tidal.deploy.kubernetes.options import KubernetesOptions, RenderError
from tidal.deploy.kubernetes.output import to_json, to_yaml
from tidal.deploy.kubernetes.render import render

__all__ = [
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
