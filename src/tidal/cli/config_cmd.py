"""``tidal config generate PATH`` and ``tidal config validate REPO``: model configurations,
offline, without starting a server."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

from tidal.config.model_config import ModelConfig, TensorConfig
from tidal.config.pbtxt import ConfigError

__all__ = ["add_config_command", "parse_input_spec"]


def add_config_command(commands: argparse._SubParsersAction) -> None:
    """Register ``tidal config`` and its sub-commands on the top-level parser."""
    config = commands.add_parser(
        "config",
        help="generate or check model configurations offline",
        description="Generate a model's config.pbtxt, or check a whole model repository, "
        "without starting a server.",
    )
    config.set_defaults(command="config", handler=lambda _: _usage(config))
    sub = config.add_subparsers(title="config commands")
    generate = sub.add_parser(
        "generate",
        help="print the completed config.pbtxt of an ONNX or TorchScript model",
        description="Print the completed config.pbtxt of a model: ONNX models are read from "
        "the graph; TorchScript models are run twice on example inputs given with --input "
        "(or listed in an existing config.pbtxt). An existing config.pbtxt next to the model "
        "is completed, never contradicted.",
    )
    generate.add_argument(
        "path", type=Path, help="a model folder, one of its version folders, or a model file"
    )
    generate.add_argument(
        "--input",
        action="append",
        default=[],
        metavar="[NAME:]TYPE:DIMS",
        help="a TorchScript input, e.g. INPUT__0:FP32:-1,3,224,224 (TYPE is a v2 datatype "
        "such as FP32, INT64, BYTES; -1 marks a variable dimension; a leading -1 on every "
        "input lets the model batch); repeat for each input, in forward() order",
    )
    generate.add_argument(
        "--max-batch-size",
        type=int,
        metavar="N",
        help="max_batch_size for a model that can batch (default 4); 0 turns batching off",
    )
    generate.add_argument("--name", help="the model name (default: the model folder's name)")
    generate.set_defaults(command="config generate", handler=_generate)
    validate = sub.add_parser(
        "validate",
        help="check every model of a repository and list every problem",
        description="Check every model of one or more model repositories as `tidal serve` "
        "would load them (configuration, model files, labels, ensemble steps) and list every "
        "problem found. Exit status 1 when there is any.",
    )
    validate.add_argument("repository", type=Path, nargs="+", help="a model repository folder")
    validate.add_argument(
        "--disable-auto-complete-config",
        action="store_true",
        help="check the configurations as written, without completing them from model files",
    )
    validate.set_defaults(command="config validate", handler=_validate)


def _usage(parser: argparse.ArgumentParser) -> int:
    parser.print_help(sys.stderr)
    return 2


# -- generate ----------------------------------------------------------------------------------


def parse_input_spec(text: str, index: int) -> TensorConfig:
    """``[NAME:]TYPE:DIMS`` (``INPUT__0:FP32:-1,3,224,224``) as an input with full dims; a
    spec without a name is called ``INPUT__<index>``."""
    from tidal.core.datatypes import DataType

    parts = text.split(":")
    if len(parts) == 2:
        parts.insert(0, f"INPUT__{index}")
    if len(parts) != 3 or not parts[0]:
        raise ValueError(f"--input '{text}': expected [NAME:]TYPE:DIMS such as INPUT__0:FP32:-1,3")
    name, type_name, dims_text = parts
    type_name = type_name.upper().removeprefix("TYPE_")
    try:
        data_type = DataType.BYTES if type_name == "STRING" else DataType.parse(type_name)
    except ValueError:
        known = ", ".join(d.value for d in DataType)
        raise ValueError(f"--input '{text}': unknown type '{type_name}' (known: {known})") from None
    try:
        dims = tuple(int(d) for d in dims_text.replace(" ", "").split(",") if d)
    except ValueError:
        raise ValueError(f"--input '{text}': dims must be integers such as -1,3,224,224") from None
    if not dims or any(d == 0 or d < -1 for d in dims):
        raise ValueError(f"--input '{text}': dims must be positive or -1, got {list(dims)}")
    return TensorConfig(name=name, data_type=data_type, dims=dims)


@dataclass
class _Target:
    """What ``PATH`` points at: the version folder holding the model and the base config."""

    config: ModelConfig
    version_dir: Path


def _generate(args: argparse.Namespace) -> int:
    try:
        inputs = [parse_input_spec(text, i) for i, text in enumerate(args.input)]
        text = generate_config(args.path, inputs, args.max_batch_size, args.name)
    except (ConfigError, ValueError) as exc:
        print(f"tidal config generate: {exc}", file=sys.stderr)
        return 1
    sys.stdout.write(text)
    return 0


def generate_config(
    path: Path,
    inputs: list[TensorConfig],
    max_batch_size: int | None = None,
    name: str | None = None,
) -> str:
    """The completed ``config.pbtxt`` text of the model at ``path``."""
    from tidal.backends.registry import backend_name_for, get_backend

    target = _target(path, name)
    config = target.config
    backend_name = backend_name_for(config, [target.version_dir])
    if max_batch_size is not None and max_batch_size < 0:
        raise ValueError(f"--max-batch-size must be >= 0, got {max_batch_size}")
    if backend_name == "pytorch":
        config = _complete_torchscript(config, target.version_dir, inputs, max_batch_size)
    else:
        if inputs:
            raise ValueError(
                f"--input describes TorchScript inputs; the model at {path} is "
                f"'{backend_name}', whose inputs are read from the model itself"
            )
        config = _complete_other(config, target.version_dir, backend_name, max_batch_size)
        if backend_name == "onnxruntime":  # check the result against the graph
            get_backend(backend_name).create_instance(config, target.version_dir, "cpu", 1).close()
    from tidal.config.validation import validate_config

    validate_config(config)
    return _to_text(config)


def _target(path: Path, name: str | None) -> _Target:
    from tidal.config.pbtxt import read_model_config
    from tidal.repository.layout import version_dirs

    path = path.resolve()
    if not path.exists():
        raise ValueError(f"{path} does not exist")
    model_dir: Path | None
    filename = ""
    if path.is_file() or (path.suffix == ".onnx" and path.is_dir()):
        version_dir, filename = path.parent, path.name
        model_dir = version_dir.parent if version_dir.name.isdigit() else None
    elif path.name.isdigit():
        version_dir, model_dir = path, path.parent
    else:
        versions = version_dirs(path)
        if not versions:
            raise ValueError(f"{path} has no numeric version folder (such as {path}/1)")
        version_dir, model_dir = versions[max(versions)], path
    config = read_model_config(model_dir) if model_dir is not None else ModelConfig(name="")
    model_name = name or config.name or (model_dir.name if model_dir else Path(filename).stem)
    config = replace(config, name=model_name)
    if filename and filename not in ("model.onnx", "model.pt"):
        config = replace(config, default_model_filename=filename)
    return _Target(config, version_dir)


def _complete_torchscript(
    config: ModelConfig, version_dir: Path, inputs: list[TensorConfig], max_batch_size: int | None
) -> ModelConfig:
    from tidal.backends.torchscript import complete_by_running

    if inputs:
        config = replace(config, inputs=tuple(inputs), max_batch_size=0)
    elif config.inputs and all(t.data_type and (t.dims or t.reshape) for t in config.inputs):
        # The inputs of an existing config.pbtxt, as full shapes: the batch dimension included.
        lead = (-1,) if config.batching else ()
        config = replace(
            config, inputs=tuple(replace(t, dims=lead + t.dims) for t in config.inputs)
        )
        if max_batch_size is None and config.batching:
            max_batch_size = config.max_batch_size
    else:
        raise ValueError(
            "a TorchScript model's inputs cannot be read from the file: describe each with "
            "--input NAME:TYPE:DIMS (e.g. --input INPUT__0:FP32:-1,3,224,224)"
        )
    return complete_by_running(config, version_dir, max_batch_size)


def _complete_other(
    config: ModelConfig, version_dir: Path, backend_name: str, max_batch_size: int | None
) -> ModelConfig:
    from tidal.backends.registry import get_backend, platform_for
    from tidal.config.model_config import DynamicBatching

    config = replace(
        config,
        backend=config.backend or ("" if backend_name == "ensemble" else backend_name),
        platform=config.platform or platform_for(backend_name),
    )
    if max_batch_size:
        config = replace(config, max_batch_size=max_batch_size)
    config = get_backend(backend_name).auto_complete(config, version_dir)
    if max_batch_size == 0 and config.batching and config.dynamic_batching is not None:
        # Asked for no batching: give the batch dimension back to every tensor.
        config = replace(
            config,
            max_batch_size=0,
            dynamic_batching=None,
            inputs=tuple(replace(t, dims=(-1, *t.dims)) for t in config.inputs),
            outputs=tuple(replace(t, dims=(-1, *t.dims)) for t in config.outputs),
        )
    elif config.batching and config.dynamic_batching is None and not config.is_ensemble:
        config = replace(config, dynamic_batching=DynamicBatching())
    return config


def _to_text(config: ModelConfig) -> str:
    from google.protobuf import text_format

    from tidal.config.model_config import VersionPolicy
    from tidal.config.proto import to_proto

    message = to_proto(config)
    # Defaults written out by the conversion: leave them out of a new file.
    if config.version_policy == VersionPolicy():
        message.ClearField("version_policy")
    if message.HasField("dynamic_batching"):
        policy = message.dynamic_batching.default_queue_policy
        if policy.ByteSize() == 0:
            message.dynamic_batching.ClearField("default_queue_policy")
    return text_format.MessageToString(message, use_short_repeated_primitives=True)


# -- validate ----------------------------------------------------------------------------------


@dataclass
class ModelReport:
    """What ``validate`` found about one model."""

    name: str
    summary: str = ""
    problems: list[str] = field(default_factory=list)


def _validate(args: argparse.Namespace) -> int:
    try:
        reports = validate_repositories(args.repository, not args.disable_auto_complete_config)
    except ConfigError as exc:
        print(f"tidal config validate: {exc}", file=sys.stderr)
        return 1
    width = max((len(r.name) for r in reports), default=0)
    for report in reports:
        if not report.problems:
            print(f"ok    {report.name:<{width}}  {report.summary}")
            continue
        print(f"FAIL  {report.name:<{width}}  {report.problems[0]}")
        for problem in report.problems[1:]:
            print(f"      {'':<{width}}  {problem}")
    bad = [r for r in reports if r.problems]
    problems = sum(len(r.problems) for r in bad)
    print(
        f"{len(reports)} model(s): {len(reports) - len(bad)} ok, {len(bad)} with problems"
        + (f" ({problems} problem(s))" if problems else "")
    )
    return 1 if bad else 0


def validate_repositories(paths: list[Path], auto_complete: bool = True) -> list[ModelReport]:
    """Check each model of the repositories as the server would load it, on the CPU, with
    one instance per version; ensembles are checked against their steps' models."""
    from tidal.config.ensemble import ensemble_load_order
    from tidal.repository.layout import scan_repositories

    folders = scan_repositories(paths)
    plain, ensembles = ensemble_load_order(folders)
    good: dict[str, tuple[ModelConfig, list[int]]] = {}
    reports: dict[str, ModelReport] = {}

    def step_config(name: str, version: int | None) -> ModelConfig:
        if name not in folders:
            raise ConfigError(f"model '{name}' is not in the repository")
        if name not in good:
            raise ConfigError(f"model '{name}' has problems of its own")
        config, versions = good[name]
        if version is not None and version not in versions:
            raise ConfigError(f"model '{name}' has no version {version} to serve")
        return config

    for name in plain + ensembles:
        report = reports[name] = ModelReport(name)
        checked = _check_model(report, folders[name], auto_complete, step_config)
        if checked is not None:
            good[name] = checked
    return [reports[name] for name in sorted(reports)]


def _check_model(
    report: ModelReport,
    folder: Path,
    auto_complete: bool,
    step_config: Callable[[str, int | None], ModelConfig],
) -> tuple[ModelConfig, list[int]] | None:
    """Add one model's problems to its report; its config and selected versions if none."""
    from tidal.config.ensemble import check_ensemble_steps
    from tidal.repository.loader import prepare_config

    name = report.name
    try:
        config, backend, versions = prepare_config(folder, auto_complete)
    except ConfigError as exc:
        report.problems.append(str(exc))
        return None
    except Exception as exc:  # a backend's own failure while completing the config
        report.problems.append(f"model '{name}': {type(exc).__name__}: {exc}")
        return None
    selected = config.version_policy.select(versions)
    if not selected:
        report.problems.append(
            f"model '{name}': no version folder in {folder} matches the version policy"
        )
    report.problems += _label_problems(config, folder)
    if config.is_ensemble:
        try:
            check_ensemble_steps(config, step_config)
        except ConfigError as exc:
            report.problems.append(str(exc))
    else:
        report.problems += _version_problems(config, backend, selected, versions)
    if report.problems:
        return None
    kind = config.platform or config.backend
    report.summary = f"{kind}, version(s) {', '.join(map(str, selected))}"
    return config, selected


def _label_problems(config: ModelConfig, model_dir: Path) -> list[str]:
    return [
        f"model '{config.name}': output '{t.name}': label file {model_dir / t.label_filename} "
        "not found"
        for t in config.outputs
        if t.label_filename and not (model_dir / t.label_filename).is_file()
    ]


def _version_problems(
    config: ModelConfig, backend: object, selected: list[int], versions: dict[int, Path]
) -> list[str]:
    """Load one CPU instance of each selected version: the model file must fit the config."""
    problems = []
    for version in selected:
        try:
            backend.create_instance(config, versions[version], "cpu", version).close()  # type: ignore[attr-defined]
        except ConfigError as exc:
            problems.append(f"version {version}: {exc}")
        except Exception as exc:  # a backend's own failure must be listed, not raised
            problems.append(f"version {version}: {type(exc).__name__}: {exc}")
    return problems
