"""Entry point of a Python-model worker: ``python bootstrap.py SOCKET_FD P2C_FD SIZE C2P_FD SIZE``.

Runs as a script under any interpreter (the server's, or the one of a model's
``EXECUTION_ENV_PATH``), so it imports only the standard library, then loads the folder it lives
in as the package ``tidal_python_worker`` (numpy and sibling modules only; never tidal itself).
"""

import importlib.util
import os
import sys

PACKAGE = "tidal_python_worker"


def _load_package() -> None:
    here = os.path.dirname(os.path.abspath(__file__))
    # Running a script puts its folder first on sys.path; the model must not import our
    # modules (channel, runner, ...) by accident, so take it off again.
    if sys.path and os.path.abspath(sys.path[0] or ".") == here:
        del sys.path[0]
    spec = importlib.util.spec_from_file_location(
        PACKAGE, os.path.join(here, "__init__.py"), submodule_search_locations=[here]
    )
    assert spec is not None and spec.loader is not None
    package = importlib.util.module_from_spec(spec)
    sys.modules[PACKAGE] = package
    spec.loader.exec_module(package)


if __name__ == "__main__":
    _load_package()
    from tidal_python_worker.runner import main  # type: ignore[import-not-found]

    sys.exit(main(sys.argv[1:]))
