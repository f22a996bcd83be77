"""Folder fingerprints, tolerant repository listing, pushed files, and the index."""

from __future__ import annotations

import asyncio
import os

import pytest
from onnx import TensorProto

from tidal.core import ErrorCode, InferenceError, ModelState
from tidal.core.metadata import RepositoryEntry
from tidal.repository import ModelRepository
from tidal.repository.fingerprint import folder_fingerprint
from tidal.repository.layout import list_model_folders
from tidal.repository.overrides import (
    parse_config_override,
    remove_override_files,
    write_override_files,
)
from tidal.server.repository_index import DUPLICATE_REASON, repository_index

from ..tiny_onnx import identity_model, write_model


def test_fingerprint_follows_content_names_and_times(tmp_path):
    (tmp_path / "1").mkdir()
    (tmp_path / "1" / "model.onnx").write_bytes(b"abc")
    first = folder_fingerprint(tmp_path)
    assert folder_fingerprint(tmp_path) == first
    path = tmp_path / "1" / "model.onnx"
    stat = path.stat()
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 5_000_000_000))
    touched = folder_fingerprint(tmp_path)
    assert touched != first
    (tmp_path / "2").mkdir()
    assert folder_fingerprint(tmp_path) != touched


def test_fingerprint_survives_symlink_loops(tmp_path):
    (tmp_path / "1").mkdir()
    (tmp_path / "1" / "loop").symlink_to(tmp_path)
    assert len(folder_fingerprint(tmp_path)) == 32


def test_listing_keeps_duplicates_and_reports_missing_repositories(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    for repo in (a, b):
        (repo / "shared").mkdir(parents=True)
    (a / "only_a").mkdir()
    (a / ".hidden").mkdir()
    (a / "file.txt").write_text("not a model")
    folders, problems = list_model_folders([a, b, tmp_path / "gone"])
    assert folders == {"only_a": [a / "only_a"], "shared": [a / "shared", b / "shared"]}
    assert len(problems) == 1 and "gone" in problems[0]


def test_pushed_files_land_in_a_temporary_folder():
    folder = write_override_files("m/x", {"file:1/model.onnx": b"abc", "file:labels.txt": b"l"})
    try:
        assert (folder / "1" / "model.onnx").read_bytes() == b"abc"
        assert (folder / "labels.txt").read_bytes() == b"l"
        assert "/" not in folder.name
    finally:
        remove_override_files(folder)
    assert not folder.exists()


@pytest.mark.parametrize(
    "key", ["file:", "file:/abs", "file:../up", "file:1/../../up", "file:a\\b", "file:dir/"]
)
def test_pushed_file_paths_must_stay_inside(key):
    with pytest.raises(InferenceError) as info:
        write_override_files("m", {key: b""})
    assert info.value.code is ErrorCode.INVALID_ARG
    assert "Invalid file parameter" in info.value.message


def test_config_override_parsing():
    config = parse_config_override("m", '{"max_batch_size": 3, "input": [{"name": "x"}]}')
    assert (config.name, config.max_batch_size, config.inputs[0].name) == ("", 3, "x")
    assert parse_config_override("m", '{"name": "m"}').name == "m"
    for text, needle in [
        ('{"name": "n"}', "directory name must equal model name"),
        ('{"max_batch_size": "lots"}', "Invalid config override"),
        ('{"no_such_field": 1}', "Invalid config override"),
        ("[" * 5000 + "]" * 5000, "Invalid config override"),
    ]:
        with pytest.raises(InferenceError) as info:
            parse_config_override("m", text)
        assert info.value.code is ErrorCode.INVALID_ARG
        assert needle in info.value.message


def test_index(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    write_model(a / "loaded" / "1", identity_model(("n", 2), TensorProto.FLOAT))
    write_model(a / "loaded" / "2", identity_model(("n", 2), TensorProto.FLOAT))
    (a / "loaded" / "config.pbtxt").write_text("version_policy { all { } }")
    (a / "idle").mkdir(parents=True)
    (a / "twice").mkdir()
    (b / "twice").mkdir(parents=True)

    async def scenario():
        repository = ModelRepository([a, b], auto_complete=True)
        await repository.load(  # not in the listing: pushed, as a load request's files are
            "pushed", a / "loaded"
        )
        await repository.load("loaded", a / "loaded")
        await repository.load("idle", a / "idle")  # fails: no version
        try:
            everything = repository_index(repository, ready_only=False)
            ready = repository_index(repository, ready_only=True)
            await repository.unload("loaded")
            unloaded = repository_index(repository, ready_only=False)
        finally:
            await repository.unload_all()
        return everything, ready, unloaded

    everything, ready, unloaded = asyncio.run(scenario())
    assert everything == [
        RepositoryEntry("idle", "", "UNAVAILABLE", everything[0].reason),
        RepositoryEntry("loaded", "1", "READY"),
        RepositoryEntry("loaded", "2", "READY"),
        RepositoryEntry("pushed", "1", "READY"),
        RepositoryEntry("pushed", "2", "READY"),
        RepositoryEntry("twice", "", "UNAVAILABLE", DUPLICATE_REASON),
    ]
    assert "no known model file" in everything[0].reason
    assert [(e.name, e.version) for e in ready] == [
        ("loaded", "1"),
        ("loaded", "2"),
        ("pushed", "1"),
        ("pushed", "2"),
    ]
    assert unloaded[1:3] == [
        RepositoryEntry("loaded", "1", ModelState.UNAVAILABLE.value, "unloaded"),
        RepositoryEntry("loaded", "2", ModelState.UNAVAILABLE.value, "unloaded"),
    ]


def test_index_lists_never_loaded_folders_by_name(tmp_path):
    (tmp_path / "waiting").mkdir()
    repository = ModelRepository([tmp_path], auto_complete=True)
    assert repository_index(repository, ready_only=False) == [RepositoryEntry("waiting")]
    assert repository_index(repository, ready_only=True) == []
