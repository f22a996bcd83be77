"""``tidal deploy``: start a named service from registered models (see docs/deployments.md)."""

from __future__ import annotations

import argparse
import json
import sys
from typing import TYPE_CHECKING, Any

from tidal.deploy.kubernetes.cli import wire_kubernetes

if TYPE_CHECKING:
    from tidal.deploy.service import ServiceInfo

__all__ = ["add_deploy_command", "fail", "load_specs", "print_how_to_call"]


def add_deploy_command(commands: Any) -> None:
    """Register ``tidal deploy`` on the top-level parser."""
    deploy = commands.add_parser(
        "deploy",
        help="deploy registered models as a named local service",
        description="Start service NAME from registered models: without --ic, one model's "
        "triton/ repository over the v2 protocol; with --ic, an entry script at /score. Waits "
        "until the service is Healthy or Failed.",
    )
    deploy.add_argument("-n", "--name", required=True, help="the service name")
    deploy.add_argument(
        "-m",
        "--model",
        dest="models",
        action="append",
        default=[],
        metavar="NAME:VERSION",
        help="a registered model (repeatable; the latest version when :VERSION is omitted)",
    )
    add_config_flags(deploy)
    deploy.add_argument("--port", type=int, help="the public port (default: the --dc port or free)")
    deploy.add_argument("--overwrite", action="store_true", help="replace a service of that name")
    deploy.add_argument("--no-wait", action="store_true", help="return without waiting")
    deploy.add_argument("--timeout", type=float, default=600.0, help="seconds to wait (600)")
    # yaml: the Kubernetes objects of --target kubernetes --dry-run (json prints them too)
    deploy.add_argument("-o", "--output", choices=("text", "json", "yaml"), default="text")
    deploy.set_defaults(command="deploy", handler=_deploy)
    wire_kubernetes(deploy, "deploy")  # --target kubernetes and its flags


def add_config_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--ic", "--inference-config", dest="inference_config", help="inference-config.json"
    )
    parser.add_argument(
        "--dc", "--deploy-config", dest="deploy_config", help="deploymentconfig.json"
    )


def load_specs(args: argparse.Namespace) -> tuple[Any, Any]:
    """The inference and deployment specs named by --ic/--dc (None when not given)."""
    from tidal.deploy.specs import load_deployment_config, load_inference_config

    inference = load_inference_config(args.inference_config) if args.inference_config else None
    deployment = None
    if args.deploy_config:
        deployment, warnings = load_deployment_config(args.deploy_config)
        for warning in warnings:
            print(f"warning: {warning}", file=sys.stderr)
    return inference, deployment


def fail(command: str, exc: BaseException) -> int:
    print(f"tidal {command}: {exc}", file=sys.stderr)
    return 1


def _deploy(args: argparse.Namespace) -> int:
    from tidal.deploy.service import ServiceError, ServiceManager
    from tidal.deploy.specs import SpecError

    if args.port is not None and not 0 < args.port < 65536:
        return fail("deploy", ValueError(f"--port must be between 1 and 65535, got {args.port}"))
    try:
        inference, deployment = load_specs(args)
        manager = ServiceManager()
        progress = None if args.output == "json" else _progress
        info = manager.deploy(
            args.name,
            args.models,
            inference=inference,
            deployment=deployment,
            port=args.port,
            overwrite=args.overwrite,
            wait=not args.no_wait,
            timeout=args.timeout,
            output=progress,
        )
        keys = manager.keys(args.name) if info.auth_enabled else None
    except (ServiceError, SpecError) as exc:
        return fail("deploy", exc)
    except KeyboardInterrupt:
        return fail("deploy", RuntimeError("interrupted; the service goes on starting"))
    if args.output == "json":
        print(json.dumps(info.to_json(), indent=2))
    else:
        print_how_to_call(info, keys[0] if keys else None)
    if info.state == "Failed":
        print(
            f"tidal deploy: service '{info.name}' failed: {info.error} "
            f"(tidal service logs -n {info.name})",
            file=sys.stderr,
        )
        return 1
    return 0


def _progress(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def print_how_to_call(info: ServiceInfo, key: str | None) -> None:
    """The service's state, URIs and a curl line that calls it."""
    print(f"Service:     {info.name}")
    print(f"State:       {info.state}")
    print(f"Scoring URI: {info.scoring_uri}")
    print(f"Swagger URI: {info.swagger_uri or '-'}")
    if info.grpc_port:
        print(f"gRPC:        localhost:{info.grpc_port}")
    auth = f' -H "Authorization: Bearer {key}"' if key else ""
    if info.swagger_uri:  # an entry script at /score
        call = (
            f"curl -X POST {info.scoring_uri}{auth} -H 'Content-Type: application/json' "
            "-d '<your input>'"
        )
    else:
        call = f"curl {info.scoring_uri}v2{auth}   # the v2 protocol at the service root"
    print(f"Call it:     {call}")
