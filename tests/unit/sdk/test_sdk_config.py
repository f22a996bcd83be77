"""The SDK's pure parts: workspace config, environments, inference and deployment configs."""

from __future__ import annotations

import json
import logging

import pytest

import tidal.sdk
from tidal.sdk import (
    CondaDependencies,
    Environment,
    InferenceConfig,
    LocalWebservice,
    Workspace,
)


def test_public_names_are_pinned():
    assert tidal.sdk.__all__ == [
        "CondaDependencies",
        "Environment",
        "InferenceConfig",
        "LocalWebservice",
        "Model",
        "Webservice",
        "WebserviceException",
        "Workspace",
    ]


# --------------------------------------------------------------------------- Workspace


def test_workspace_home_defaults_to_tidal_home(tmp_path, monkeypatch):
    monkeypatch.setenv("TIDAL_HOME", str(tmp_path / "home"))
    ws = Workspace()
    assert ws.home == (tmp_path / "home").resolve()
    assert ws.home.is_dir()
    assert Workspace(tmp_path / "other").home == (tmp_path / "other").resolve()


def test_from_config_finds_azureml_folder_in_a_parent(tmp_path, monkeypatch):
    project = tmp_path / "project"
    (project / ".azureml").mkdir(parents=True)
    (project / ".azureml" / "config.json").write_text(
        json.dumps(
            {
                "subscription_id": "ignored",
                "resource_group": "ignored",
                "workspace_name": "mine",
                "tidal_home": "state",
            }
        )
    )
    deep = project / "src" / "pkg"
    deep.mkdir(parents=True)
    monkeypatch.chdir(deep)
    ws = Workspace.from_config()
    assert ws.name == "mine"
    # A relative home is relative to the config file's folder, not to the cwd.
    assert ws.home == (project / ".azureml" / "state").resolve()


def test_from_config_reads_a_file_path_and_plain_config_json(tmp_path, monkeypatch):
    monkeypatch.setenv("TIDAL_HOME", str(tmp_path / "default"))
    (tmp_path / "config.json").write_text(json.dumps({"subscription_id": "x"}))
    ws = Workspace.from_config(tmp_path)
    assert ws.home == (tmp_path / "default").resolve()
    assert ws.name == "local"
    named = tmp_path / "custom.json"
    named.write_text(json.dumps({"tidal_home": str(tmp_path / "abs")}))
    assert Workspace.from_config(named).home == (tmp_path / "abs").resolve()


def test_write_config_round_trips(tmp_path):
    ws = Workspace(tmp_path / "home", name="round")
    written = ws.write_config(tmp_path / "proj")
    assert written == tmp_path / "proj" / ".azureml" / "config.json"
    again = Workspace.from_config(tmp_path / "proj")
    assert (again.home, again.name) == (ws.home, "round")


def test_from_config_errors_are_clear(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"no workspace config 'nowhere-tidal-test\.json'"):
        Workspace.from_config(tmp_path / "empty", _file_name="nowhere-tidal-test.json")
    bad = tmp_path / "bad.json"
    bad.write_text("[1, 2]")
    with pytest.raises(ValueError, match="must hold a JSON object"):
        Workspace.from_config(bad)
    bad.write_text("{not json")
    with pytest.raises(ValueError, match="cannot read workspace config"):
        Workspace.from_config(bad)
    bad.write_text(json.dumps({"tidal_home": 3}))
    with pytest.raises(ValueError, match="tidal_home must be a non-empty string"):
        Workspace.from_config(bad)


# --------------------------------------------------------------------------- environments


def test_conda_dependencies_pip_packages():
    deps = CondaDependencies()
    deps.add_pip_package("nltk")
    deps.add_pip_package("numpy>=1.20")
    deps.add_pip_package("NLTK==3.8")  # same package (case-insensitive): replaces
    deps.add_conda_package("scipy")
    deps.set_python_version("3.10")
    assert deps.pip_packages == ("numpy>=1.20", "NLTK==3.8")
    assert deps.conda_packages == ("python=3.10", "scipy")
    deps.remove_pip_package("numpy")
    assert deps.pip_packages == ("NLTK==3.8",)
    created = CondaDependencies.create(pip_packages=["a", "b"], conda_packages=["c"])
    assert created.as_dict() == {"dependencies": ["c", {"pip": ["a", "b"]}]}


def test_conda_file_yaml_and_json(tmp_path):
    yml = tmp_path / "env.yml"
    yml.write_text(
        "name: scoring\nchannels: [conda-forge]\ndependencies:\n"
        "  - python=3.10\n  - pip:\n    - nltk\n    - pillow>=10\n"
    )
    assert CondaDependencies(yml).pip_packages == ("nltk", "pillow>=10")
    js = tmp_path / "env.json"
    js.write_text(json.dumps({"dependencies": [{"pip": ["x"]}]}))
    assert Environment.from_conda_specification("e", js).python.conda_dependencies.pip_packages == (
        "x",
    )
    js.write_text(json.dumps({"dependencies": [{"pip": "x"}]}))
    with pytest.raises(ValueError, match=r"dependencies\[0\]\.pip must be a list"):
        CondaDependencies(js)


def test_curated_environment_clone_and_edit(tmp_path, caplog):
    ws = Workspace(tmp_path)
    with caplog.at_level(logging.INFO, logger="tidal.sdk"):
        curated = Environment.get(ws, "AzureML-Minimal")
    assert "AzureML-Minimal" in caplog.text
    assert curated.python.conda_dependencies.pip_packages == ()
    env = curated.clone("mine")
    env.python.conda_dependencies.add_pip_package("nltk")
    env.environment_variables["WORKER_COUNT"] = "1"
    assert env.name == "mine" and curated.name == "AzureML-Minimal"
    # The clone is deep: editing it leaves the original alone.
    assert curated.python.conda_dependencies.pip_packages == ()
    assert curated.environment_variables == {}


def test_register_and_get_environment(tmp_path):
    ws = Workspace(tmp_path)
    env = Environment("scoring-env")
    env.python.conda_dependencies.add_pip_package("pillow")
    env.environment_variables["A"] = "1"
    assert env.register(ws).version == "1"
    assert env.register(ws).version == "2"
    got = Environment.get(ws, "scoring-env")
    assert got.version == "2"
    assert got.python.conda_dependencies.pip_packages == ("pillow",)
    assert got.environment_variables == {"A": "1"}
    assert set(Environment.list(ws)) == {"scoring-env"}
    with pytest.raises(ValueError, match="not registered"):
        Environment.get(ws, "unknown")
    with pytest.raises(ValueError, match="invalid environment name"):
        Environment.get(ws, "../escape")


def test_from_pip_requirements(tmp_path):
    req = tmp_path / "requirements.txt"
    req.write_text("# comment\nnltk==3.8  # pinned\n\n--find-links ./wheels\npillow\n")
    env = Environment.from_pip_requirements("req", req)
    assert env.python.conda_dependencies.pip_packages == (
        "nltk==3.8",
        "--find-links ./wheels",
        "pillow",
    )


def test_environment_to_spec():
    from tidal.deploy.specs import EnvironmentSpec

    env = Environment("e")
    env.python.conda_dependencies.add_pip_package("nltk")
    env.environment_variables["WORKER_COUNT"] = 2  # type: ignore[assignment]
    spec = env.to_spec()
    assert isinstance(spec, EnvironmentSpec)
    assert spec.name == "e"
    assert spec.pip_packages == ("nltk",)
    assert spec.environment_variables == {"WORKER_COUNT": "2"}
    env.python.user_managed_dependencies = True
    assert env.to_spec().pip_packages == ()


def test_environment_to_spec_makes_relative_wheel_paths_absolute(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    env = Environment("e")
    env.python.conda_dependencies.add_pip_package("wheels/x-1.0-py3-none-any.whl")
    assert env.to_spec().pip_packages == (
        str(tmp_path.resolve() / "wheels" / "x-1.0-py3-none-any.whl"),
    )


# --------------------------------------------------------------------------- InferenceConfig


def test_inference_config_to_spec(tmp_path, monkeypatch):
    from tidal.deploy.specs import InferenceSpec

    monkeypatch.chdir(tmp_path)
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "score.py").write_text("def init(): pass\ndef run(d): return d\n")
    (tmp_path / "score.py").write_text("def init(): pass\ndef run(d): return d\n")
    env = Environment("e")
    env.python.conda_dependencies.add_pip_package("nltk")
    config = InferenceConfig(entry_script="score.py", source_directory="src", environment=env)
    spec = config.to_spec()
    assert isinstance(spec, InferenceSpec)
    assert spec.entry_script == "score.py"
    assert spec.source_directory == (tmp_path / "src").resolve()
    assert spec.environment is not None and spec.environment.pip_packages == ("nltk",)
    bare = InferenceConfig("score.py").to_spec()
    assert bare.source_directory is None and bare.environment is None
    with pytest.raises(ValueError, match=r"entryScript 'missing\.py' does not exist"):
        InferenceConfig("missing.py", source_directory="src").to_spec()


def test_inference_config_conda_file(tmp_path):
    (tmp_path / "env.yml").write_text("dependencies:\n  - pip:\n    - pillow\n")
    config = InferenceConfig(
        entry_script="score.py", runtime="python", conda_file="env.yml", source_directory=tmp_path
    )
    assert config.environment is not None
    assert config.environment.python.conda_dependencies.pip_packages == ("pillow",)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({}, "entry_script is required"),
        ({"entry_script": "s.py", "runtime": "spark-py"}, "runtime 'spark-py'"),
        ({"entry_script": "s.py", "base_image": "img"}, "base_image describe a Docker image"),
        (
            {"entry_script": "s.py", "conda_file": "e.yml", "environment": Environment("e")},
            "either environment or runtime/conda_file",
        ),
    ],
)
def test_inference_config_errors(kwargs, message):
    with pytest.raises(ValueError, match=message):
        InferenceConfig(**kwargs)


# --------------------------------------------------------------------------- deploy config


def test_local_deploy_configuration():
    config = LocalWebservice.deploy_configuration(port=6789)
    assert config.port == 6789
    assert config.to_json() == {"computeType": "local", "authEnabled": True, "port": 6789}
    spec = config.to_spec()
    assert spec.compute_type == "local"
    assert spec.port == 6789
    assert spec.auth_enabled is True


def test_local_deploy_configuration_extras():
    config = LocalWebservice.deploy_configuration(
        auth_enabled=False,
        scoring_timeout_ms=5000,
        replica_max_concurrent_requests=4,
        cpu_cores=1.5,
        environment_variables={"WORKER_COUNT": "2"},
    )
    assert config.to_json() == {
        "computeType": "local",
        "authEnabled": False,
        "scoringTimeoutMs": 5000,
        "maxConcurrentRequestsPerContainer": 4,
        "environmentVariables": {"WORKER_COUNT": "2"},
        "containerResourceRequirements": {"cpu": 1.5},
    }
    spec = config.to_spec()
    assert (spec.port, spec.auth_enabled, spec.scoring_timeout_ms) == (None, False, 5000)
    assert spec.max_concurrent_requests == 4
    assert spec.environment_variables == {"WORKER_COUNT": "2"}


def test_deploy_configuration_is_validated_like_the_json_file():
    with pytest.raises(ValueError, match="port"):
        LocalWebservice.deploy_configuration(port=70000).to_spec()


def test_unknown_deploy_configuration_argument_is_refused():
    with pytest.raises(TypeError):
        LocalWebservice.deploy_configuration(port=1, bogus=True)
