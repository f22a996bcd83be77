"""The command-line glue of ``tidal deploy --target kubernetes`` and ``tidal service ...``
for services that run on Kubernetes. The deploy CLI owns the parsers; these functions take
its parsed arguments and return an exit status."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from tidal.deploy.kubernetes.kubectl import (
    KubectlError,
    apply,
    current_context,
    delete,
    logs,
    show,
)
from tidal.deploy.kubernetes.options import REGISTRY_CLAIM, KubernetesOptions
from tidal.deploy.kubernetes.output import to_json, to_yaml
from tidal.deploy.kubernetes.render import render

__all__ = [
    "add_kubernetes_flags",
    "delete_kubernetes",
    "deploy_kubernetes",
    "logs_kubernetes",
    "render_from_args",
    "show_kubernetes",
    "wants_kubernetes",
    "wire_kubernetes",
]


def wire_kubernetes(parser: argparse.ArgumentParser, command: str) -> None:
    """Give a ``tidal deploy`` / ``tidal service show|logs|delete`` parser the Kubernetes flags,
    and make its handler hand ``--target kubernetes`` (and, for deploy, a deployment config
    whose ``computeType`` is ``kubernetes``) to this module, the rest to the local handler."""
    local = parser.get_default("handler")
    kube = {
        "deploy": deploy_kubernetes,
        "show": show_kubernetes,
        "logs": logs_kubernetes,
        "delete": delete_kubernetes,
    }[command]
    group = parser.add_argument_group("Kubernetes")
    group.add_argument(
        "--target",
        choices=("local", "kubernetes"),
        default=None,
        help="where the service runs (default: the --dc computeType, else local)",
    )
    group.add_argument("--namespace", help="Kubernetes namespace (default: the context's)")
    if command == "deploy":
        add_kubernetes_flags(group)

    def handler(args: argparse.Namespace) -> int:
        return kube(args) if wants_kubernetes(args) else local(args)

    parser.set_defaults(handler=handler)


def wants_kubernetes(args: argparse.Namespace) -> bool:
    """``--target kubernetes``, or no ``--target`` and a deployment config asking for it."""
    target = getattr(args, "target", None)
    if target is not None:
        return target == "kubernetes"
    config = _arg(args, "deploy_config", "dc")
    if not config:
        return False
    try:
        with open(config, encoding="utf-8") as handle:
            compute = json.load(handle).get("computeType")
    except (OSError, ValueError, AttributeError):
        return False  # the local path reports the unreadable file with its own message
    return isinstance(compute, str) and compute.lower() == "kubernetes"


def add_kubernetes_flags(group: Any) -> None:
    """The ``tidal deploy`` flags used with ``--target kubernetes`` (ignored otherwise)."""
    group.add_argument(
        "--dry-run",
        dest="dry_run",
        action="store_true",
        help="print the objects (-o yaml|json) instead of applying them with kubectl",
    )
    group.add_argument("--image", help="container image (default: this release's tidal image)")
    group.add_argument(
        "--registry-claim",
        dest="registry_claim",
        default=REGISTRY_CLAIM,
        help="PersistentVolumeClaim holding the model registry (TIDAL_HOME) the pods download "
        f"models from (default {REGISTRY_CLAIM}); 'none': the models are baked into the image",
    )
    group.add_argument(
        "--service-type",
        dest="service_type",
        default="ClusterIP",
        choices=("ClusterIP", "NodePort", "LoadBalancer"),
    )
    group.add_argument(
        "--queue-time-target-ms",
        dest="queue_time_target_ms",
        type=int,
        help="also scale on the mean queue time per request (needs a metrics adapter)",
    )
    group.add_argument(
        "--keys-file",
        dest="keys_file",
        help="use the key digests of this keys file (from 'tidal keys generate') instead of "
        "making new keys",
    )


def render_from_args(args: argparse.Namespace, err: Any = None) -> list[dict[str, Any]]:
    """Read the registry and the deployment files named by ``args`` and render the objects.

    New keys are made when none are given; they are printed once on ``err`` (stderr), the
    only place they ever appear. Raises ``ValueError`` subclasses and ``RegistryError``.
    """
    from tidal.deploy.model_layout import triton_subpath
    from tidal.deploy.specs import DeploymentSpec, load_deployment_config, load_inference_config
    from tidal.registry import ModelRegistry, parse_model_id
    from tidal.security.keys import KeyHashes, generate_key, load_keys_file

    err = err or sys.stderr
    deployment = DeploymentSpec(compute_type="kubernetes")
    if _arg(args, "deploy_config", "dc"):
        deployment, warnings = load_deployment_config(_arg(args, "deploy_config", "dc"))
        for warning in warnings:
            print(f"warning: {warning}", file=err)
    ic = _arg(args, "inference_config", "ic")
    inference = load_inference_config(ic) if ic else None
    registry = ModelRegistry(getattr(args, "home", None))
    models = [registry.get(*parse_model_id(text)) for text in args.models or ()]
    layouts = {
        m.id: triton_subpath(path for path, _, _ in registry.files(m.name, m.version))
        for m in models
    }
    keys = None
    if deployment.auth_enabled:
        if getattr(args, "keys_file", None):
            keys = load_keys_file(args.keys_file)
        else:
            primary, secondary = generate_key(), generate_key()
            keys = KeyHashes.of(primary, secondary)
            shown = {"primaryKey": primary, "secondaryKey": secondary}
            print(f"service keys (shown once, only their digests are stored): {json.dumps(shown)}",
                  file=err)  # fmt: skip
    claim = getattr(args, "registry_claim", REGISTRY_CLAIM)
    options = KubernetesOptions(
        image=getattr(args, "image", None),
        namespace=getattr(args, "namespace", None),
        registry_claim=None if claim in (None, "", "none") else claim,
        service_type=getattr(args, "service_type", "ClusterIP") or "ClusterIP",
        queue_time_target_ms=getattr(args, "queue_time_target_ms", None),
        http_service_port=getattr(args, "port", None) or 80,  # --port: the Service's HTTP port
    )
    return render(
        args.name, models, inference=inference, deployment=deployment, keys_hashed=keys,
        options=options, repositories=layouts,
    )  # fmt: skip


def deploy_kubernetes(args: argparse.Namespace) -> int:
    """``tidal deploy --target kubernetes``: print (``--dry-run``) or apply the objects."""
    from tidal.registry import RegistryError

    dry_run = getattr(args, "dry_run", False)
    if not dry_run:  # before new keys are made and shown for nothing
        try:
            current_context()
        except KubectlError as exc:
            return _fail("deploy", f"{exc} (or print the objects with --dry-run -o yaml)")
    try:
        objects = render_from_args(args)
    except (ValueError, RegistryError) as exc:  # SpecError and RenderError are ValueErrors
        return _fail("deploy", exc)
    if dry_run:
        fmt = getattr(args, "output", None) or "yaml"  # "text", the local default, is yaml
        sys.stdout.write(to_json(objects) if fmt == "json" else to_yaml(objects))
        return 0
    try:
        sys.stdout.write(apply(objects, getattr(args, "namespace", None)))
    except KubectlError as exc:
        return _fail("deploy", exc)
    ns = f" -n {args.namespace}" if getattr(args, "namespace", None) else ""
    print(
        f"applied; follow the rollout with: kubectl rollout status deployment/{args.name}{ns}",
        file=sys.stderr,
    )
    return 0


def show_kubernetes(args: argparse.Namespace) -> int:
    """``tidal service show -n NAME --target kubernetes``: state and scoring URI as JSON."""
    try:
        print(json.dumps(show(args.name, getattr(args, "namespace", None)), indent=2))
    except KubectlError as exc:
        return _fail("service show", exc)
    return 0


def logs_kubernetes(args: argparse.Namespace) -> int:
    """``tidal service logs -n NAME --target kubernetes [--tail N]``."""
    try:
        sys.stdout.write(
            logs(
                args.name,
                getattr(args, "namespace", None),
                getattr(args, "tail", None),
                follow=bool(getattr(args, "follow", False)),
            )
        )
    except KubectlError as exc:
        return _fail("service logs", exc)
    return 0


def delete_kubernetes(args: argparse.Namespace) -> int:
    """``tidal service delete -n NAME --target kubernetes``: every object of the service."""
    try:
        sys.stdout.write(delete(args.name, getattr(args, "namespace", None)))
    except KubectlError as exc:
        return _fail("service delete", exc)
    return 0


def _arg(args: argparse.Namespace, *names: str) -> Any:
    for name in names:
        if getattr(args, name, None):
            return getattr(args, name)
    return None


def _fail(command: str, exc: BaseException | str) -> int:
    print(f"tidal {command}: {exc}", file=sys.stderr)
    return 1
