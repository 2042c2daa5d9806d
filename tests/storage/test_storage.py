"""One atomic write for every output, on a local disk and on an fsspec
filesystem reached by URL (fsspec's in-memory one), with nothing left behind
when a write fails."""

from __future__ import annotations

import json
import os
import stat

import fsspec
import pytest

from pipeline import storage
from pipeline.errors import OutputError


def test_local_write_is_atomic_and_leaves_no_temporary_file(tmp_path):
    target = tmp_path / "sub" / "out.json"
    storage.write_json(target, {"b": 1, "a": [1, 2]})
    assert target.read_text() == json.dumps({"a": [1, 2], "b": 1}, indent=1)
    assert [p.name for p in target.parent.iterdir()] == ["out.json"]
    umask = os.umask(0)
    os.umask(umask)
    assert stat.S_IMODE(target.stat().st_mode) == 0o666 & ~umask


def broken(fh) -> None:
    """A writer that fails half-way through."""
    fh.write("half of the new")
    raise RuntimeError("disk gone")


def test_a_failed_write_keeps_the_old_file(tmp_path):
    target = tmp_path / "out.txt"
    storage.write_text(target, "old")

    with pytest.raises(RuntimeError):
        storage.atomic_write(target, broken, text=True)
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["out.txt"]


def test_urls_go_through_fsspec_without_a_branch_in_the_caller():
    fs = fsspec.filesystem("memory")
    root = "memory://pose-run/output"
    try:
        storage.ensure_writable(root)
        target = storage.join(root, "demo", "card.md")
        assert target == "memory://pose-run/output/demo/card.md"
        storage.write_text(target, "# card\n")
        assert storage.exists(target) and storage.read_text(target) == "# card\n"
        assert fs.cat_file("/pose-run/output/demo/card.md") == b"# card\n"
        storage.write_json(storage.join(root, "x.json"), {"k": 1}, indent=None)
        assert storage.read_json(storage.join(root, "x.json")) == {"k": 1}
        assert storage.free_bytes(root) is None  # object stores do not say; the disk check skips them
        assert storage.volume_id(root) == "memory:pose-run"
        storage.remove_tree(storage.join(root, "demo"))
        assert not storage.exists(target)
        with pytest.raises(OutputError, match="not on a local file system"):
            storage.local_path(target)
    finally:
        fs.rm("/pose-run", recursive=True)


def test_local_paths_keep_the_form_they_were_given(tmp_path):
    assert storage.join("models", "demo_pose.json") == "models/demo_pose.json"
    assert storage.absolute("models/x.json") == str((tmp_path.cwd() / "models" / "x.json").resolve())
    assert storage.volume_id(tmp_path) == storage.volume_id(tmp_path / ".")


def test_a_failed_write_to_object_storage_publishes_nothing(s3, s3_bucket):
    """Written through a local spool and uploaded: a writer that fails half-way leaves the old
    object (or none), never a part of the new one."""
    target = f"{s3_bucket}/out/pose.json"
    storage.write_text(target, "old")

    with pytest.raises(RuntimeError):
        storage.atomic_write(target, broken, text=True)
    with pytest.raises(RuntimeError):
        storage.atomic_write(f"{s3_bucket}/out/new.json", broken, text=True)
    assert storage.read_text(target) == "old"
    assert storage.list_names(f"{s3_bucket}/out") == ["pose.json"]


def test_a_store_without_atomic_uploads_gets_a_temporary_name_and_a_rename(tmp_path, monkeypatch):
    """fsspec's memory filesystem stands for a store whose writes can be seen half done (SFTP,
    HDFS): the file goes to a temporary name that is renamed over the target; none is left."""
    fs = fsspec.filesystem("memory")
    moves = []
    original = type(fs).mv
    monkeypatch.setattr(type(fs), "mv", lambda self, a, b, **kw: moves.append((a, b)) or original(self, a, b, **kw))
    root = "memory://non-atomic/out"
    try:
        storage.write_text(storage.join(root, "report.html"), "<html></html>")
        assert storage.read_text(storage.join(root, "report.html")) == "<html></html>"
        assert len(moves) == 1 and moves[0][0].endswith(".part") and moves[0][1].endswith("/report.html")
        assert storage.list_names(root) == ["report.html"]
    finally:
        fs.rm("/non-atomic", recursive=True)
