"""What ``tidal deploy --target kubernetes`` is told beyond the Azure-style deployment files."""

from __future__ import annotations

import re
from dataclasses import dataclass

from tidal import __version__

__all__ = [
    "DEFAULT_IMAGE",
    "DEFAULT_IMAGE_CUDA",
    "REGISTRY_CLAIM",
    "KubernetesOptions",
    "RenderError",
    "check_name",
]

# Tags name the release, never "latest": a rollout must know which bytes it runs.
DEFAULT_IMAGE = f"tidal:{__version__}"
DEFAULT_IMAGE_CUDA = f"tidal:{__version__}-cuda"
REGISTRY_CLAIM = "tidal-registry"

# A Service name is an RFC 1035 label; "-keys" and "-app" are appended for the Secret and
# ConfigMap, so the service name keeps room for them inside 63 characters.
_NAME_RE = re.compile(r"[a-z]([-a-z0-9]{0,56}[a-z0-9])?")


class RenderError(ValueError):
    """The service cannot be turned into Kubernetes objects; the message says why."""


@dataclass(frozen=True)
class KubernetesOptions:
    """Knobs of the rendered objects; the defaults suit a first deployment.

    ``registry_claim`` names the PersistentVolumeClaim holding a ``TIDAL_HOME`` (the model
    registry): an init container runs ``tidal model download`` from it into the pod's
    ``/models``. ``None`` means the models are baked into ``image`` under ``/models`` instead.
    """

    image: str | None = None  # None: DEFAULT_IMAGE, or DEFAULT_IMAGE_CUDA when a GPU is asked
    namespace: str | None = None  # None: the current context's namespace
    registry_claim: str | None = REGISTRY_CLAIM
    service_type: str = "ClusterIP"
    http_service_port: int = 80
    image_pull_policy: str = "IfNotPresent"
    # Seconds the pod keeps serving after it is marked for deletion, while endpoints and load
    # balancers stop sending to it (the preStop hook), before SIGTERM starts tidal's own drain.
    drain_delay_secs: int = 5
    exit_timeout_secs: int = 30  # tidal serve --exit-timeout-secs
    startup_timeout_secs: int = 600  # how long models may take to load before a restart
    # Optional HPA target on the mean queue time per request, in milliseconds, read through a
    # metrics adapter from tidal's tidal_inference_queue_duration_seconds histogram.
    queue_time_target_ms: int | None = None

    def __post_init__(self) -> None:
        if self.service_type not in ("ClusterIP", "NodePort", "LoadBalancer"):
            raise RenderError(
                f"service type must be ClusterIP, NodePort or LoadBalancer, got "
                f"{self.service_type!r}"
            )
        if self.namespace is not None and not _NAME_RE.fullmatch(self.namespace):
            raise RenderError(f"namespace {self.namespace!r} is not a valid Kubernetes name")
        if self.image is not None and (not self.image.strip() or self.image.endswith(":latest")):
            raise RenderError(f"image {self.image!r}: give a non-empty image with a fixed tag")
        for field, low in (
            ("drain_delay_secs", 0),
            ("exit_timeout_secs", 0),
            ("startup_timeout_secs", 5),
            ("http_service_port", 1),
        ):
            if getattr(self, field) < low:
                raise RenderError(f"{field} must be at least {low}")
        if self.queue_time_target_ms is not None and self.queue_time_target_ms < 1:
            raise RenderError("queue_time_target_ms must be at least 1")

    def image_for(self, gpu: int) -> str:
        """The container image: the one given, else the release's CPU or CUDA image."""
        if self.image:
            return self.image
        return DEFAULT_IMAGE_CUDA if gpu else DEFAULT_IMAGE


def check_name(name: str) -> str:
    """Return ``name`` if Kubernetes accepts it as a Service name (with room for suffixes)."""
    if not isinstance(name, str) or not _NAME_RE.fullmatch(name):
        raise RenderError(
            f"service name {name!r} cannot name Kubernetes objects: use lower-case letters, "
            "digits and '-', starting with a letter and ending with a letter or digit, "
            "at most 58 characters"
        )
    return name
