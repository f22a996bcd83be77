import pytest

from tidal.config import ConfigError
from tidal.repository.layout import scan_repositories, version_dirs


def _folders(root, *names):
    for name in names:
        (root / name).mkdir(parents=True)
    return root


def test_scan_finds_model_folders_across_repositories(tmp_path):
    first = _folders(tmp_path / "r1", "b", "a")
    second = _folders(tmp_path / "r2", "c")
    models = scan_repositories([first, second])
    assert models == {"a": first / "a", "b": first / "b", "c": second / "c"}
    assert list(models) == ["a", "b", "c"]


def test_scan_skips_files_and_hidden_folders(tmp_path):
    repo = _folders(tmp_path / "r", "m", ".git", ".ipynb_checkpoints")
    (repo / "README.md").write_text("not a model")
    assert scan_repositories([repo]) == {"m": repo / "m"}


def test_empty_repository(tmp_path):
    assert scan_repositories([tmp_path]) == {}
    assert scan_repositories([]) == {}


def test_same_model_in_two_repositories_is_an_error(tmp_path):
    first = _folders(tmp_path / "r1", "m")
    second = _folders(tmp_path / "r2", "m")
    with pytest.raises(ConfigError) as info:
        scan_repositories([first, second])
    assert str(info.value) == (
        f"model 'm' appears in two repositories: {first / 'm'} and {second / 'm'}"
    )


def test_missing_repository_is_an_error(tmp_path):
    missing = tmp_path / "nope"
    with pytest.raises(ConfigError) as info:
        scan_repositories([missing])
    assert str(info.value) == f"model repository {missing} is not a directory"


def test_file_as_repository_is_an_error(tmp_path):
    path = tmp_path / "file"
    path.write_text("")
    with pytest.raises(ConfigError):
        scan_repositories([path])


def test_version_dirs_take_plain_decimal_folders_only(tmp_path):
    model = _folders(tmp_path / "m", "1", "20", "0", "01", "v1", "1a", "-1", " 2", "1.0")
    (model / "3").write_text("a file, not a folder")
    assert version_dirs(model) == {0: model / "0", 1: model / "1", 20: model / "20"}


def test_version_dirs_of_an_empty_model(tmp_path):
    assert version_dirs(tmp_path) == {}
