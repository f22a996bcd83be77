"""Virtual environments built with the real pip from local wheels (never a package index)."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from tidal.deploy.environment import (
    EnvironmentBuildError,
    environment_key,
    normalise_packages,
    pip_packages_from_conda,
    python_for_environment,
    resolve_local_paths,
)

from .wheels import build_wheel


@pytest.fixture(autouse=True)
def _no_index(monkeypatch):
    # Belt and braces: even a test bug must not make pip contact an index.
    monkeypatch.setenv("PIP_NO_INDEX", "1")


@pytest.fixture(scope="module")
def wheels(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("wheels")
    build_wheel(out, "tidal_envtest_a", body="def greet():\n    return 'hello from a'\n")
    build_wheel(out, "tidal_envtest_b")
    return out


@pytest.fixture(scope="module")
def built(tmp_path_factory, wheels) -> tuple[Path, Path, list[str], float]:
    """One environment holding wheel a, built once for the module: (home, python, lines, secs)."""
    home = tmp_path_factory.mktemp("home")
    lines: list[str] = []
    started = time.monotonic()
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("PIP_NO_INDEX", "1")
        python = python_for_environment(
            home, [str(wheels / "tidal_envtest_a-1.0-py3-none-any.whl")], output=lines.append
        )
    return home, python, lines, time.monotonic() - started


def _run_python(python: Path, code: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(python), "-c", code], capture_output=True, text=True, timeout=60, check=False
    )


def test_empty_list_is_the_running_interpreter(tmp_path):
    assert python_for_environment(tmp_path, []) == Path(sys.executable)
    assert python_for_environment(tmp_path, ["  ", "# comment"]) == Path(sys.executable)
    assert not (tmp_path / "envs").exists()


def test_built_environment_imports_the_package_and_tidal(built):
    home, python, lines, _ = built
    assert python.is_file() or python.is_symlink()
    assert python.parent.parent.parent == home / "envs"
    assert python != Path(sys.executable)
    assert any("Building environment" in line for line in lines)
    result = _run_python(python, "import tidal_envtest_a, tidal; print(tidal_envtest_a.greet())")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "hello from a"
    # Installed into the environment only, not into the interpreter running the tests.
    base = _run_python(Path(sys.executable), "import tidal_envtest_a")
    assert base.returncode != 0


def test_second_call_reuses_the_cache(built, wheels):
    home, python, _, first_secs = built
    lines: list[str] = []
    started = time.monotonic()
    again = python_for_environment(
        home, [str(wheels / "tidal_envtest_a-1.0-py3-none-any.whl")], output=lines.append
    )
    elapsed = time.monotonic() - started
    assert again == python
    assert lines == []  # nothing built
    assert elapsed < 0.2 < first_secs


def test_different_lists_give_different_environments(built, wheels):
    home, python, _, _ = built
    both = python_for_environment(
        home,
        [
            str(wheels / "tidal_envtest_b-1.0-py3-none-any.whl"),
            str(wheels / "tidal_envtest_a-1.0-py3-none-any.whl"),
        ],
    )
    assert both != python
    result = _run_python(both, "import tidal_envtest_a, tidal_envtest_b")
    assert result.returncode == 0, result.stderr
    only_a = _run_python(python, "import tidal_envtest_b")
    assert only_a.returncode != 0


def test_requirement_name_with_find_links(tmp_path, wheels):
    python = python_for_environment(
        tmp_path, ["tidal_envtest_b==1.0", f"--find-links {wheels}", "--no-index"]
    )
    result = _run_python(python, "import tidal_envtest_b; print(tidal_envtest_b.VERSION)")
    assert result.stdout.strip() == "1.0", result.stderr


def test_normalisation_ignores_order_duplicates_and_spacing(tmp_path):
    assert normalise_packages([" b  >= 1", "a", "a", ""]) == ("a", "b >= 1")
    key = environment_key(normalise_packages(["a", "b>=1"]))
    assert key == environment_key(normalise_packages(["b>=1", " a "]))
    assert key != environment_key(normalise_packages(["a"]))
    local = tmp_path / "pkg.whl"
    # Relative local paths are made absolute so the key does not depend on the cwd.
    assert normalise_packages([str(local)]) == (str(local.resolve()),)
    assert normalise_packages(["git+https://example.com/x.git"]) == (
        "git+https://example.com/x.git",
    )
    with pytest.raises(TypeError):
        normalise_packages("nltk")


def test_resolve_local_paths_keeps_order_and_leaves_names_alone(tmp_path):
    entries = ["nltk==3.8", "./wheels/a-1.0-py3-none-any.whl", "--find-links wheels", "file:x"]
    assert resolve_local_paths(entries, tmp_path) == (
        "nltk==3.8",
        str(tmp_path.resolve() / "wheels" / "a-1.0-py3-none-any.whl"),
        "--find-links wheels",
        "file:x",
    )


def test_rebuilt_local_wheel_gets_a_new_key(tmp_path):
    wheel = build_wheel(tmp_path, "tidal_envtest_c", body="X = 1\n")
    first = environment_key(normalise_packages([str(wheel)]))
    build_wheel(tmp_path, "tidal_envtest_c", body="X = 2\n")
    assert environment_key(normalise_packages([str(wheel)])) != first


def test_missing_package_fails_with_pips_message_and_no_cache_entry(tmp_path):
    with pytest.raises(EnvironmentBuildError) as caught:
        python_for_environment(tmp_path, ["tidal-no-such-package-anywhere==9.9"])
    message = str(caught.value)
    assert "pip install failed" in message
    assert "No matching distribution found for tidal-no-such-package-anywhere" in message
    assert [p.name for p in (tmp_path / "envs").iterdir() if not p.name.endswith(".lock")] == []


def test_missing_local_wheel_fails_and_leaves_no_cache_entry(tmp_path):
    missing = tmp_path / "nowhere" / "tidal_envtest_x-1.0-py3-none-any.whl"
    with pytest.raises(EnvironmentBuildError) as caught:
        python_for_environment(tmp_path, [str(missing)])
    assert "does not exist" in str(caught.value) or "No such file" in str(caught.value)
    assert [p.name for p in (tmp_path / "envs").iterdir() if not p.name.endswith(".lock")] == []


def test_invalid_requirement_fails(tmp_path):
    with pytest.raises(EnvironmentBuildError, match="Invalid requirement"):
        python_for_environment(tmp_path, ["not a [valid requirement"])


def test_half_built_entry_is_rebuilt(tmp_path, wheels):
    wheel = str(wheels / "tidal_envtest_b-1.0-py3-none-any.whl")
    key = environment_key(normalise_packages([wheel]))
    stale = tmp_path / "envs" / key
    stale.mkdir(parents=True)
    (stale / "leftover").write_text("from a build that died")
    python = python_for_environment(tmp_path, [wheel])
    assert not (stale / "leftover").exists()
    assert _run_python(python, "import tidal_envtest_b").returncode == 0


def test_concurrent_callers_build_once(tmp_path, wheels):
    wheel = str(wheels / "tidal_envtest_b-1.0-py3-none-any.whl")
    lines: list[str] = []
    results: list[Path] = []

    def build() -> None:
        results.append(python_for_environment(tmp_path, [wheel], output=lines.append))

    threads = [threading.Thread(target=build) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert len(results) == 3 and len(set(results)) == 1
    assert sum("Building environment" in line for line in lines) == 1


def test_environment_built_from_inside_a_venv_still_sees_tidal(built, wheels, tmp_path):
    # The running interpreter is a venv here: the new venv must reach the parent's packages.
    _, python, _, _ = built
    wheel = str(wheels / "tidal_envtest_b-1.0-py3-none-any.whl")
    code = (
        "from pathlib import Path;"
        "from tidal.deploy.environment import python_for_environment as p;"
        f"print(p(Path({str(tmp_path)!r}), [{wheel!r}]))"
    )
    result = _run_python(python, code)
    assert result.returncode == 0, result.stderr
    nested = Path(result.stdout.strip().splitlines()[-1])
    check = _run_python(nested, "import tidal, tidal_envtest_a, tidal_envtest_b")
    assert check.returncode == 0, check.stderr


@pytest.mark.parametrize(
    ("obj", "expected"),
    [
        (None, ()),
        ({"dependencies": ["python=3.10", {"pip": ["nltk", " numpy>=1 "]}]}, ("nltk", "numpy>=1")),
        (["python=3.10", "pip", {"pip": ["a"]}, {"pip": ["b"]}], ("a", "b")),
        ({"name": "env", "channels": ["conda-forge"], "dependencies": ["numpy"]}, ()),
        ({"python": {"condaDependencies": {"dependencies": [{"pip": ["x"]}]}}}, ("x",)),
        ({"conda_dependencies": {"dependencies": [{"pip": ["y"]}]}}, ("y",)),
    ],
)
def test_pip_packages_from_conda(obj, expected):
    assert pip_packages_from_conda(obj) == expected


@pytest.mark.parametrize(
    ("obj", "field"),
    [
        ({"dependencies": "numpy"}, "dependencies must be a list"),
        ({"dependencies": [{"pip": "nltk"}]}, r"dependencies\[0\]\.pip must be a list"),
        ({"dependencies": ["a", {"pip": [1]}]}, r"dependencies\[1\]\.pip\[0\]"),
        ({"dependencies": [3]}, r"dependencies\[0\] must be"),
    ],
)
def test_pip_packages_from_conda_errors_name_the_field(obj, field):
    with pytest.raises(ValueError, match=field):
        pip_packages_from_conda(obj)


_BACKEND = """
import os, shutil

def build_wheel(wheel_directory, config_settings=None, metadata_directory=None):
    (name,) = [n for n in os.listdir("prebuilt") if n.endswith(".whl")]
    shutil.copy(os.path.join("prebuilt", name), wheel_directory)
    return name
"""


def test_local_project_folder_fetches_its_build_backend(tmp_path, monkeypatch):
    # A project folder needs its build backend, which pip fetches from an index (here a local
    # file index named by an option line): the build must not run with --no-index.
    monkeypatch.delenv("PIP_NO_INDEX")
    index = tmp_path / "index" / "tidal-envtest-backend"
    backend = build_wheel(index, "tidal_envtest_backend", body=_BACKEND)
    (index / "index.html").write_text(f'<a href="{backend.name}">{backend.name}</a>\n')
    project = tmp_path / "project"
    build_wheel(project / "prebuilt", "tidal_envtest_folder", body="X = 'from a folder'\n")
    (project / "pyproject.toml").write_text(
        '[build-system]\nrequires = ["tidal_envtest_backend"]\n'
        'build-backend = "tidal_envtest_backend"\n'
    )
    python = python_for_environment(
        tmp_path / "home", [str(project), f"--index-url {(tmp_path / 'index').as_uri()}"]
    )
    result = _run_python(python, "import tidal_envtest_folder as m; print(m.X)")
    assert result.stdout.strip() == "from a folder", result.stderr
