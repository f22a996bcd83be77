import os
import sqlite3
import stat
from pathlib import Path

import pytest

from tidal.home import connect
from tidal.registry import ModelRegistry, RegistryError

from .conftest import stored_objects, write_tree


def test_versions_count_up_from_one_per_name(registry, models_dir):
    assert [registry.register("a", models_dir).version for _ in range(3)] == [1, 2, 3]
    assert registry.register("b", models_dir).version == 1
    assert registry.get("a").id == "a:3"
    assert registry.get("a", 2).id == "a:2"


def test_register_records_what_was_given(registry, models_dir):
    record = registry.register(
        "ident",
        models_dir,
        framework="multi",
        framework_version="2.45",
        tags={"area": "vision", "empty": ""},
        description="identity over Triton",
    )
    assert (record.name, record.framework, record.framework_version) == ("ident", "Multi", "2.45")
    assert record.tags == {"area": "vision", "empty": ""}
    assert record.description == "identity over Triton"
    assert (record.root_name, record.is_dir, record.file_count) == ("models", True, 2)
    assert record.size_bytes == len(b'name: "identity"\n') + 8192
    assert record.created_at.endswith("+00:00")
    assert registry.get("ident", 1) == record


def test_register_refuses_bad_input_before_copying(registry, models_dir, home, tmp_path):
    with pytest.raises(RegistryError, match="invalid model name '-x'") as info:
        registry.register("-x", models_dir)
    assert info.value.kind == "invalid"
    with pytest.raises(RegistryError, match="unknown model framework") as info:
        registry.register("x", models_dir, framework="caffe")
    with pytest.raises(RegistryError, match="does not exist") as info:
        registry.register("x", tmp_path / "nothing")
    assert info.value.kind == "not_found"
    (tmp_path / "empty").mkdir()
    with pytest.raises(RegistryError, match="holds no files"):
        registry.register("x", tmp_path / "empty")
    os.mkfifo(tmp_path / "fifo")
    with pytest.raises(RegistryError, match="neither a regular file nor a folder"):
        registry.register("x", tmp_path / "fifo")
    with pytest.raises(RegistryError, match="tag key"):
        registry.register("x", models_dir, tags={"": "v"})
    assert registry.list() == []
    assert stored_objects(home) == []


def test_links_to_folders_are_refused_links_to_files_followed(registry, tmp_path):
    real = write_tree(tmp_path / "real", {"w.bin": b"weights"})
    model = write_tree(tmp_path / "model", {"config.pbtxt": b"c"})
    (model / "w.bin").symlink_to(real / "w.bin")
    record = registry.register("linked", model)
    assert [path for path, _, _ in registry.files("linked", 1)] == ["config.pbtxt", "w.bin"]
    assert record.size_bytes == len(b"weights") + 1
    (model / "sub").symlink_to(real)
    with pytest.raises(RegistryError, match="links to a folder"):
        registry.register("linked", model)


def test_get_unknown_is_not_found(registry, models_dir):
    with pytest.raises(RegistryError, match="model 'nope' not found") as info:
        registry.get("nope")
    assert info.value.kind == "not_found"
    registry.register("m", models_dir)
    with pytest.raises(RegistryError, match="model 'm:2' not found"):
        registry.get("m", 2)
    with pytest.raises(RegistryError, match="not found"):
        registry.files("m", 7)


def test_list_orders_by_name_then_newest_and_filters(registry, models_dir):
    registry.register("b", models_dir, tags={"stage": "prod", "team": "x"})
    registry.register("a", models_dir, tags={"stage": "dev"})
    registry.register("b", models_dir, tags={"stage": "dev"})
    assert [r.id for r in registry.list()] == ["a:1", "b:2", "b:1"]
    assert [r.id for r in registry.list("b")] == ["b:2", "b:1"]
    assert [r.id for r in registry.list(tags={"stage": "dev"})] == ["a:1", "b:2"]
    assert [r.id for r in registry.list(tags={"stage": "prod", "team": "x"})] == ["b:1"]
    assert [r.id for r in registry.list(tags={"stage": "prod", "team": "y"})] == []
    assert [r.id for r in registry.list(tags={"team": None})] == ["b:1"]
    assert registry.list("missing") == []


def test_identical_files_are_stored_once(registry, models_dir, home, tmp_path):
    registry.register("m", models_dir)
    registry.register("m", models_dir)
    other = write_tree(tmp_path / "other", {"model.onnx": b"\x08\x07" * 4096})
    registry.register("n", other / "model.onnx")
    assert len(stored_objects(home)) == 2
    shas = {sha for _, sha, _ in registry.files("m", 1)}
    assert {sha for _, sha, _ in registry.files("n", 1)} < shas
    for obj in stored_objects(home):
        assert stat.S_IMODE(obj.stat().st_mode) == 0o444
    assert list((home / "objects" / "tmp").iterdir()) == []


def test_download_a_folder_keeps_its_name(registry, models_dir, tmp_path):
    registry.register("m", models_dir)
    path = registry.download("m", 1, tmp_path / "out")
    assert path == tmp_path / "out" / "models"
    for relpath in ("triton/identity/config.pbtxt", "triton/identity/1/model.onnx"):
        assert (path / relpath).read_bytes() == (models_dir / relpath).read_bytes()
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["models"]


def test_download_a_single_file(registry, models_dir, tmp_path):
    source = models_dir / "triton/identity/1/model.onnx"
    record = registry.register("onnx", source, framework="onnx")
    assert (record.root_name, record.is_dir, record.file_count) == ("model.onnx", False, 1)
    assert registry.files("onnx", 1)[0][0] == "model.onnx"
    path = registry.download("onnx", 1, tmp_path / "out")
    assert path == tmp_path / "out" / "model.onnx"
    assert path.read_bytes() == source.read_bytes()
    assert os.access(path, os.W_OK)  # a copy is the user's to change


def test_download_refuses_to_overwrite(registry, models_dir, tmp_path):
    registry.register("m", models_dir)
    (tmp_path / "out" / "models").mkdir(parents=True)
    (tmp_path / "out" / "models" / "mine.txt").write_text("keep me")
    with pytest.raises(RegistryError, match="already exists") as info:
        registry.download("m", 1, tmp_path / "out")
    assert info.value.kind == "invalid"
    assert (tmp_path / "out" / "models" / "mine.txt").read_text() == "keep me"


def test_download_link_shares_the_read_only_store_file(registry, models_dir, home, tmp_path):
    registry.register("m", models_dir)
    path = registry.download("m", 1, tmp_path / "out", link=True)
    linked = path / "triton/identity/1/model.onnx"
    _, sha, _ = registry.files("m", 1)[0]
    store_file = home / "objects" / sha[:2] / sha
    assert linked.stat().st_ino == store_file.stat().st_ino
    assert stat.S_IMODE(linked.stat().st_mode) == 0o444


@pytest.mark.parametrize("link", [False, True])
def test_download_refuses_a_damaged_store_object(registry, models_dir, home, tmp_path, link):
    registry.register("m", models_dir)
    relpath, sha, _ = registry.files("m", 1)[0]
    store_file = home / "objects" / sha[:2] / sha
    store_file.chmod(0o644)
    store_file.write_bytes(b"\x00" + store_file.read_bytes()[1:])
    with pytest.raises(RegistryError) as info:
        registry.download("m", 1, tmp_path / "out", link=link)
    assert info.value.kind == "corrupt"
    assert "'m:1'" in str(info.value)
    assert relpath in str(info.value)
    assert list((tmp_path / "out").iterdir()) == []  # nothing half-written left behind


def test_download_reports_a_missing_store_object(registry, models_dir, home, tmp_path):
    registry.register("m", models_dir)
    _, sha, _ = registry.files("m", 1)[1]
    (home / "objects" / sha[:2] / sha).unlink()
    with pytest.raises(RegistryError, match="missing from the store") as info:
        registry.download("m", 1, tmp_path / "out")
    assert info.value.kind == "corrupt"


def test_progress_counts_every_byte(registry, models_dir, tmp_path):
    calls = []
    record = registry.register("m", models_dir, progress=lambda d, t: calls.append((d, t)))
    assert calls[0] == (0, record.size_bytes)
    assert calls[-1] == (record.size_bytes, record.size_bytes)
    calls.clear()
    registry.download("m", 1, tmp_path / "out", progress=lambda d, t: calls.append((d, t)))
    assert calls[-1] == (record.size_bytes, record.size_bytes)


def _assert_nothing_kept(registry, home):
    assert registry.list() == []
    assert stored_objects(home) == []
    assert list((home / "objects" / "tmp").iterdir()) == []
    with connect(home) as connection:
        assert connection.execute("SELECT COUNT(*) FROM model_files").fetchone()[0] == 0


def test_a_file_vanishing_mid_copy_leaves_no_version(registry, home, tmp_path):
    source = write_tree(tmp_path / "m", {"a.bin": b"a" * (3 << 20), "b.bin": b"b" * 10})

    def remove_b(done, total):
        if done:
            (source / "b.bin").unlink(missing_ok=True)

    with pytest.raises(RegistryError, match="disappeared") as info:
        registry.register("m", source, progress=remove_b)
    assert info.value.kind == "not_found"
    _assert_nothing_kept(registry, home)


def test_an_unreadable_file_mid_copy_leaves_no_version(registry, home, tmp_path):
    # Root reads any mode, so make b.bin unreadable by turning it into a folder mid-copy.
    source = write_tree(tmp_path / "m", {"a.bin": b"a" * (3 << 20), "b.bin": b"b" * 10})

    def replace_b(done, total):
        if done and (source / "b.bin").is_file():
            (source / "b.bin").unlink()
            (source / "b.bin").mkdir()

    with pytest.raises(RegistryError, match="cannot read") as info:
        registry.register("m", source, progress=replace_b)
    assert info.value.kind == "invalid"
    _assert_nothing_kept(registry, home)


def test_ctrl_c_mid_copy_leaves_no_version(registry, home, tmp_path):
    source = write_tree(tmp_path / "m", {"a.bin": b"a" * (3 << 20), "b.bin": b"b" * (3 << 20)})

    def interrupt(done, total):
        if done > (4 << 20):
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        registry.register("m", source, progress=interrupt)
    _assert_nothing_kept(registry, home)
    assert registry.register("m", source).version == 1  # the failed try used no number


def test_a_failed_register_keeps_objects_other_versions_use(registry, models_dir, home, tmp_path):
    registry.register("m", models_dir)
    before = stored_objects(home)
    source = write_tree(tmp_path / "m2", {"a.bin": b"fresh", "b.bin": b"x"})
    source_models = write_tree(source, {"config.pbtxt": b'name: "identity"\n'})

    def interrupt(done, total):
        if done >= total:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        registry.register("m", source_models, progress=interrupt)
    assert stored_objects(home) == before
    assert registry.download("m", 1, tmp_path / "out").is_dir()


def _mark_in_use(home: Path, service: str, name: str, version: int) -> None:
    with connect(home) as connection:
        connection.execute(
            "INSERT INTO service_models (service, model, version) VALUES (?, ?, ?)",
            (service, name, version),
        )
    connection.close()


def test_delete_in_use_is_refused_naming_the_services(registry, models_dir, home):
    registry.register("m", models_dir)
    _mark_in_use(home, "web-b", "m", 1)
    _mark_in_use(home, "web-a", "m", 1)
    assert registry.usage("m", 1) == ["web-a", "web-b"]
    assert registry.usage("m", 2) == []
    with pytest.raises(RegistryError, match="used by service web-a, web-b") as info:
        registry.delete("m", 1)
    assert info.value.kind == "in_use"
    assert registry.get("m", 1).version == 1
    assert len(stored_objects(home)) == 2


def test_delete_removes_only_unshared_objects(registry, models_dir, home, tmp_path):
    registry.register("m", models_dir)
    (models_dir / "triton/identity/1/model.onnx").write_bytes(b"v2 weights")
    registry.register("m", models_dir)
    assert len(stored_objects(home)) == 3
    registry.delete("m", 1)
    assert len(stored_objects(home)) == 2  # config.pbtxt is still used by m:2
    assert [r.id for r in registry.list()] == ["m:2"]
    path = registry.download("m", 2, tmp_path / "out")
    assert (path / "triton/identity/1/model.onnx").read_bytes() == b"v2 weights"
    registry.delete("m", 2)
    assert stored_objects(home) == []
    with pytest.raises(RegistryError, match="model 'm:2' not found") as info:
        registry.delete("m", 2)
    assert info.value.kind == "not_found"


def test_deleted_version_numbers_are_not_reused(registry, models_dir):
    registry.register("m", models_dir)
    registry.register("m", models_dir)
    registry.delete("m", 2)
    assert registry.register("m", models_dir).version == 3
    assert registry.get("m").version == 3


def test_a_second_registry_on_the_same_home_sees_everything(registry, models_dir, home):
    registry.register("m", models_dir)
    again = ModelRegistry(home)
    assert [r.id for r in again.list()] == ["m:1"]


def test_stored_paths_cannot_escape_the_target(registry, models_dir, home, tmp_path):
    registry.register("m", models_dir)
    with connect(home) as connection:
        connection.execute("UPDATE model_files SET path = '../escape' WHERE path LIKE '%.onnx'")
    connection.close()
    with pytest.raises(RegistryError, match="not a relative path") as info:
        registry.download("m", 1, tmp_path / "out" / "deep")
    assert info.value.kind == "corrupt"
    assert not (tmp_path / "out" / "escape").exists()


def test_the_schema_is_created_once_and_shared(home):
    ModelRegistry(home)
    ModelRegistry(home)
    with connect(home) as connection:
        names = {
            row[0]
            for row in connection.execute("SELECT name FROM sqlite_master WHERE type = 'table'")
        }
    connection.close()
    assert {"models", "model_files", "service_models"} <= names
    assert isinstance(connection, sqlite3.Connection)


def test_an_object_collected_by_a_concurrent_delete_is_stored_again(registry, home, tmp_path):
    shared = b"shared weights" * 1000
    registry.register("old", write_tree(tmp_path / "old", {"w.bin": shared}) / "w.bin")
    source = write_tree(tmp_path / "new", {"a.bin": shared, "b.bin": b"b" * (2 << 20)})
    deleted = []

    def delete_old_once(done, total):
        # a.bin was deduplicated against old:1; deleting old:1 now collects that object.
        if done > len(shared) and not deleted:
            registry.delete("old", 1)
            deleted.append(True)

    registry.register("new", source, progress=delete_old_once)
    assert deleted
    path = registry.download("new", 1, tmp_path / "out")
    assert (path / "a.bin").read_bytes() == shared
