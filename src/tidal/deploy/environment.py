"""Virtual environments for the ``/score`` workers of a deployment, cached by package list.

An environment's pip packages become one virtual environment under ``home/envs/<hash>/``,
keyed by the normalised package list and the running Python. The venv is made with
``--system-site-packages`` so tidal and its dependencies stay visible; only the extra packages
are installed into it, with the pip of the running interpreter. A build holds a lock file, so
concurrent deployments of the same environment build it once; a failed build leaves nothing in
the cache.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import site
import subprocess
import sys
import time
from collections import deque
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

__all__ = [
    "EnvironmentBuildError",
    "pip_packages_from_conda",
    "python_for_environment",
    "resolve_local_paths",
]

Output = Callable[[str], None]

ENVS_DIR = "envs"
_MARKER = "tidal-env.json"  # written last: its presence means the environment is complete
_REQUIREMENTS = "requirements.txt"
_TAIL_LINES = 40


class EnvironmentBuildError(RuntimeError):
    """Building an environment failed; the message ends with the tail of pip's output."""


def python_for_environment(
    home: Path, pip_packages: Sequence[str], *, output: Output | None = None
) -> Path:
    """The python executable of a virtual environment holding ``pip_packages``.

    An empty list needs no environment and returns the running interpreter. Otherwise the
    environment is built on first use (``output`` receives progress lines) and reused after.
    Entries may be requirement specifiers, local paths to wheels or project folders, or pip
    option lines such as ``--find-links DIR``; when every requirement is a local wheel, pip runs
    with ``--no-index`` so that no package index is contacted (a project folder or source
    archive needs its build backend, which pip fetches from its index).
    """
    packages = normalise_packages(pip_packages)
    if not packages:
        return Path(sys.executable)
    key = environment_key(packages)
    envs = Path(home) / ENVS_DIR
    envs.mkdir(parents=True, exist_ok=True)
    env_dir = envs / key
    python = _venv_python(env_dir)
    if (env_dir / _MARKER).is_file() and python.exists():
        return python
    with _locked(envs / f"{key}.lock"):
        # Another process may have finished the same build while we waited for the lock.
        if (env_dir / _MARKER).is_file() and python.exists():
            return python
        if env_dir.exists():  # left half-built by a process that died mid-build
            shutil.rmtree(env_dir)
        try:
            _build(env_dir, packages, output or _silent)
        except BaseException:
            shutil.rmtree(env_dir, ignore_errors=True)
            raise
    return python


def normalise_packages(pip_packages: Sequence[str]) -> tuple[str, ...]:
    """Stripped, de-duplicated and sorted entries; local paths made absolute."""
    if isinstance(pip_packages, str):
        raise TypeError("pip_packages must be a sequence of strings, not one string")
    seen: set[str] = set()
    for entry in pip_packages:
        if not isinstance(entry, str):
            raise TypeError(f"pip package entries must be strings, got {entry!r}")
        text = " ".join(entry.split())
        if not text or text.startswith("#"):
            continue
        if _looks_like_path(text) and not text.startswith("file:"):
            text = str(Path(text).expanduser().resolve())
        seen.add(text)
    return tuple(sorted(seen))


def resolve_local_paths(
    pip_packages: Sequence[str], base_dir: str | os.PathLike[str] | None = None
) -> tuple[str, ...]:
    """The entries with relative local paths (``./wheels/x.whl``) made absolute against
    ``base_dir`` (default: the current folder), order kept.

    Call it where the list is written down (the user's cwd, the config file's folder): the
    environment is built later by the service's process, in another folder.
    """
    base = Path(base_dir) if base_dir is not None else Path.cwd()
    resolved = []
    for entry in pip_packages:
        text = entry.strip()
        if _looks_like_path(text) and not text.startswith("file:"):
            text = str((base / Path(text).expanduser()).resolve())
        resolved.append(text)
    return tuple(resolved)


def environment_key(packages: Sequence[str]) -> str:
    """The cache key of a normalised package list for the running interpreter."""
    digest = hashlib.sha256()
    identity = {
        "python": [sys.implementation.name, *map(str, sys.version_info[:3])],
        "prefix": sys.prefix,
        "packages": list(packages),
        # A rebuilt local wheel with the same name must not reuse the old environment.
        "files": {p: _file_digest(Path(p)) for p in packages if Path(p).is_file()},
    }
    digest.update(json.dumps(identity, sort_keys=True).encode())
    return digest.hexdigest()[:16]


def pip_packages_from_conda(obj: Mapping[str, Any] | Sequence[Any] | None) -> tuple[str, ...]:
    """The pip entries of a conda dependencies object.

    Accepts the conda environment shape (``{"dependencies": ["python=3.10", {"pip": [...]}]}``),
    its ``dependencies`` list alone, or an Azure environment object whose ``python`` section
    holds ``condaDependencies`` / ``conda_dependencies``. Conda-only entries (``python=3.10``)
    are skipped. Raises ``ValueError`` naming the field when the shape is wrong.
    """
    if obj is None:
        return ()
    if not isinstance(obj, Mapping):
        return _pip_entries(obj)
    python = obj.get("python")
    if isinstance(python, Mapping):
        return pip_packages_from_conda(
            python.get("condaDependencies", python.get("conda_dependencies"))
        )
    for field in ("condaDependencies", "conda_dependencies"):
        if field in obj:
            return pip_packages_from_conda(obj[field])
    return _pip_entries(obj.get("dependencies", []))


def _pip_entries(dependencies: object) -> tuple[str, ...]:
    """The pip entries of a conda ``dependencies`` list (strings and ``{"pip": [...]}`` maps)."""
    if isinstance(dependencies, (str, bytes)) or not isinstance(dependencies, Sequence):
        raise ValueError(f"dependencies must be a list, got {type(dependencies).__name__}")
    packages: list[str] = []
    for index, item in enumerate(dependencies):
        if isinstance(item, Mapping):
            packages.extend(_pip_list(item.get("pip", []), f"dependencies[{index}].pip"))
        elif not isinstance(item, str):
            raise ValueError(f"dependencies[{index}] must be a string or a {{'pip': [...]}} map")
    return tuple(p for p in packages if p)


def _pip_list(pip: object, where: str) -> list[str]:
    if isinstance(pip, str) or not isinstance(pip, Sequence):
        raise ValueError(f"{where} must be a list of strings")
    entries = []
    for position, entry in enumerate(pip):
        if not isinstance(entry, str):
            raise ValueError(f"{where}[{position}] must be a string")
        entries.append(entry.strip())
    return entries


# --------------------------------------------------------------------------- building


def _build(env_dir: Path, packages: Sequence[str], output: Output) -> None:
    started = time.monotonic()
    output(f"Building environment {env_dir.name} for: {', '.join(packages)}")
    env_dir.mkdir(parents=True)
    _run(
        [sys.executable, "-m", "venv", "--system-site-packages", "--without-pip", str(env_dir)],
        output,
        "creating the virtual environment",
    )
    python = _venv_python(env_dir)
    if sys.prefix != sys.base_prefix:
        # Running from a venv: --system-site-packages only reaches the base interpreter's
        # packages, so point the new venv at ours too (tidal and its dependencies live there).
        _link_parent_site_packages(python)
    requirements = env_dir / _REQUIREMENTS
    requirements.write_text("\n".join(packages) + "\n", encoding="utf-8")
    command = [
        str(python),
        "-m",
        "pip",
        "install",
        "--disable-pip-version-check",
        "--no-input",
        "-r",
        str(requirements),
    ]
    if _only_local_wheels(packages):
        command.append("--no-index")
    _run(command, output, "pip install")
    (env_dir / _MARKER).write_text(
        json.dumps({"packages": list(packages), "python": sys.version, "built_at": time.time()}),
        encoding="utf-8",
    )
    output(f"Environment {env_dir.name} ready in {time.monotonic() - started:.1f}s")


def _run(command: Sequence[str], output: Output, what: str) -> None:
    tail: deque[str] = deque(maxlen=_TAIL_LINES)
    env = dict(os.environ, PIP_DISABLE_PIP_VERSION_CHECK="1", PYTHONUNBUFFERED="1")
    try:
        proc = subprocess.Popen(
            command,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            text=True,
            errors="replace",
            env=env,
        )
    except OSError as exc:
        raise EnvironmentBuildError(f"{what} failed: {exc}") from exc
    assert proc.stdout is not None
    with proc:
        for line in proc.stdout:
            line = line.rstrip()
            tail.append(line)
            output(line)
    if proc.returncode != 0:
        raise EnvironmentBuildError(
            f"{what} failed (exit status {proc.returncode}):\n" + "\n".join(tail)
        )


def _link_parent_site_packages(python: Path) -> None:
    purelib = subprocess.run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    dirs = [d for d in site.getsitepackages() if d.startswith(sys.prefix)]
    # An "import" line in a .pth file runs at start-up; addsitedir also reads the .pth files
    # found there (editable installs rely on them).
    lines = [f"import site; site.addsitedir({d!r})" for d in dirs]
    Path(purelib).mkdir(parents=True, exist_ok=True)
    (Path(purelib) / "_tidal_parent_env.pth").write_text("\n".join(lines) + "\n", encoding="utf-8")


# --------------------------------------------------------------------------- small helpers


def _venv_python(env_dir: Path) -> Path:
    if os.name == "nt":
        return env_dir / "Scripts" / "python.exe"
    return env_dir / "bin" / "python"


def _looks_like_path(entry: str) -> bool:
    """Whether a requirement names a local file or folder (a plain path or a file: URL)."""
    if entry.startswith("-"):
        return False
    if entry.startswith("file:"):
        return True
    if "://" in entry or " @ " in entry:  # a URL or a PEP 508 direct reference
        return False
    return (
        entry.startswith((".", "/", "~"))
        or os.sep in entry
        or (os.altsep is not None and os.altsep in entry)
        or entry.endswith((".whl", ".tar.gz", ".zip"))
    )


def _only_local_wheels(packages: Sequence[str]) -> bool:
    """Whether pip has nothing to fetch: every requirement is a built wheel on disk.

    A project folder or a source archive is built by its build backend (``setuptools`` and
    the like), which pip installs from its index into an isolated build environment.
    """
    requirements = [p for p in packages if not p.startswith("-")]
    return bool(requirements) and all(
        _looks_like_path(p) and p.endswith(".whl") for p in requirements
    )


def _file_digest(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _silent(_line: str) -> None:
    return None


@contextmanager
def _locked(path: Path) -> Iterator[None]:
    """An exclusive lock on ``path`` across processes, held for the ``with`` block."""
    with path.open("a+b") as handle:
        if sys.platform == "win32":
            with _windows_lock(handle):
                yield
        else:
            import fcntl

            fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


if sys.platform == "win32":

    @contextmanager
    def _windows_lock(handle: IO[bytes]) -> Iterator[None]:
        import msvcrt

        handle.seek(0)
        while True:
            try:
                msvcrt.locking(handle.fileno(), msvcrt.LK_LOCK, 1)
                break
            except OSError:  # LK_LOCK gives up after 10 s; keep waiting
                continue
        try:
            yield
        finally:
            handle.seek(0)
            msvcrt.locking(handle.fileno(), msvcrt.LK_UNLCK, 1)
