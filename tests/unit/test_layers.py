"""The package layers of ``src/tidal``, checked on the import graph.

Every module's imports are read with ``ast`` (function-level and ``TYPE_CHECKING`` imports
included, relative imports resolved), so a new import that breaks a rule fails here, not in
review. ``LAYERS`` lists the layers, lowest first: a package imports only packages of lower
layers (and itself), never another package of its own layer.
"""

from __future__ import annotations

import ast
from collections.abc import Container, Iterable, Iterator
from functools import cache
from pathlib import Path

import pytest

import tidal

SRC = Path(tidal.__file__).resolve().parent

LAYERS: tuple[frozenset[str], ...] = (
    # ``tidal`` is the root package itself (``__version__``); ``home`` finds TIDAL_HOME;
    # ``examples`` is data.
    frozenset({"tidal", "core", "home", "examples"}),
    frozenset({"config"}),
    # Wire formats, model runtimes, keys/TLS/auth policy, the model registry's store.
    frozenset({"protocol", "backends", "security", "registry", "http1"}),
    frozenset({"scheduling"}),  # queues, batchers, the ensemble scheduler (on backends' types)
    frozenset({"repository"}),  # loads models into schedulers
    frozenset({"server"}),  # the facade
    frozenset({"frontends"}),  # HTTP/1.1, gRPC (own HTTP/2 and grpc.aio), metrics
    frozenset({"serve", "scoring", "deploy"}),  # the processes built on the frontends
    frozenset({"sdk"}),
    frozenset({"cli"}),
    frozenset({"__main__"}),
)


def module_name(path: Path, root: Path = SRC) -> str:
    """``tidal.a.b`` for ``root/a/b.py`` and for ``root/a/b/__init__.py``."""
    parts = (root.name, *path.relative_to(root).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports_of(source: str, module: str, is_package: bool) -> set[str]:
    """The absolute names a module's source imports, at any depth of its code.

    ``from a import b`` yields ``a`` and ``a.b`` (``b`` may be a submodule); relative imports
    are resolved against ``module``.
    """
    package = module if is_package else module.rpartition(".")[0]
    names: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base_parts = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*base_parts, *([node.module] if node.module else [])])
            else:
                base = node.module or ""
            names.add(base)
            names.update(f"{base}.{alias.name}" for alias in node.names if alias.name != "*")
    return names


@cache
def graph() -> dict[str, frozenset[str]]:
    """Every module of ``tidal`` -> the ``tidal`` modules it imports (an imported name that
    is no module counts as its module: ``tidal.__version__`` is ``tidal``)."""
    sources = {module_name(path): path for path in sorted(SRC.rglob("*.py"))}
    edges: dict[str, frozenset[str]] = {}
    for module, path in sources.items():
        found = imports_of(path.read_text(), module, path.name == "__init__.py")
        edges[module] = frozenset(filter(None, (_known(name, sources) for name in found)))
    return edges


def _known(name: str, modules: Container[str]) -> str | None:
    """The longest module of ``modules`` that ``name`` is or lies under."""
    while name and name not in modules:
        name = name.rpartition(".")[0]
    return name or None


def component(name: str) -> str:
    """The top-level package of a ``tidal`` name: ``tidal.server.facade`` -> ``server``."""
    parts = name.split(".")
    return parts[1] if len(parts) > 1 else "tidal"


def rank(name: str) -> int:
    return next(i for i, layer in enumerate(LAYERS) if component(name) in layer)


def imports_under(prefixes: Iterable[str], targets: str) -> Iterator[str]:
    """``module -> import`` for each module under one of ``prefixes`` importing ``targets``."""
    for module, names in graph().items():
        if any(module == p or module.startswith(p + ".") for p in prefixes):
            for name in sorted(names):
                if name == targets or name.startswith(targets + "."):
                    yield f"{module} -> {name}"


def test_the_graph_reads_function_level_and_relative_imports():
    source = (
        "import os\n"
        "from . import sibling\n"
        "from ..core import types\n"
        "def f():\n"
        "    from tidal.server import facade\n"
        "    if True:\n"
        "        import tidal.cli.main\n"
    )
    found = imports_of(source, "tidal.protocol.codec", is_package=False)
    assert {"os", "tidal.protocol.sibling", "tidal.core.types"} <= found
    assert {"tidal.server.facade", "tidal.cli.main"} <= found
    assert len(graph()) > 100  # the whole tree was read


def test_every_package_has_a_layer():
    components = {component(m) for m in graph()}
    unplaced = components - set().union(*LAYERS)
    assert not unplaced, f"packages without a layer in LAYERS: {sorted(unplaced)}"


def test_packages_import_only_lower_layers():
    wrong = [
        f"{module} (layer {rank(module)}) -> {name} (layer {rank(name)})"
        for module, names in graph().items()
        for name in sorted(names)
        if component(name) != component(module) and rank(name) >= rank(module)
    ]
    assert not wrong, "imports against the layer order:\n" + "\n".join(wrong)


def test_protocol_depends_only_on_core_and_config():
    wrong = [
        f"{module} -> {name}"
        for module, names in graph().items()
        if component(module) == "protocol"
        for name in sorted(names)
        if component(name) not in {"protocol", "core", "config"}
    ]
    assert not wrong, "\n".join(wrong)


def test_security_imports_no_frontend():
    wrong = list(imports_under(["tidal.security"], "tidal.frontends"))
    assert not wrong, "\n".join(wrong)


def test_scoring_imports_no_frontend():
    """``/score`` workers serve on the HTTP/1.1 transport (``http1``), not on a frontend."""
    wrong = list(imports_under(["tidal.scoring"], "tidal.frontends"))
    assert not wrong, "\n".join(wrong)


def test_no_cycle_between_frontend_packages():
    """``frontends/http``, ``frontends/grpc``, ``frontends/metrics``: one may use another,
    never both ways."""
    packages = {m.split(".")[2] for m in graph() if m.startswith("tidal.frontends.")}
    packages = {p for p in packages if (SRC / "frontends" / p).is_dir()}
    uses = {
        (a, b)
        for a in packages
        for b in packages
        if a != b and any(imports_under([f"tidal.frontends.{a}"], f"tidal.frontends.{b}"))
    }
    both_ways = sorted((a, b) for a, b in uses if (b, a) in uses and a < b)
    assert not both_ways, "\n".join(
        "\n".join(
            [
                *imports_under([f"tidal.frontends.{a}"], f"tidal.frontends.{b}"),
                *imports_under([f"tidal.frontends.{b}"], f"tidal.frontends.{a}"),
            ]
        )
        for a, b in both_ways
    )


def test_the_backend_registry_names_only_backends_modules():
    from tidal.backends import registry

    outside = {
        name: target
        for name, target in registry._BUILTIN.items()
        if not target.startswith("tidal.backends.")
    }
    assert not outside, outside


@pytest.mark.parametrize("name", ["onnxruntime", "ensemble", "python"])
def test_each_builtin_backend_imports(name):
    from tidal.backends.registry import get_backend

    assert get_backend(name).name == name


def test_the_python_model_worker_imports_no_tidal_module():
    """The worker runs under a model's own interpreter, as the package
    ``tidal_python_worker``: it may import its own modules, never tidal."""
    worker = "tidal.backends.python.worker"
    wrong = [
        f"{module} -> {name}"
        for module, names in graph().items()
        if module == worker or module.startswith(worker + ".")
        for name in sorted(names)
        if not (name == worker or name.startswith(worker + "."))
    ]
    assert not wrong, "\n".join(wrong)
