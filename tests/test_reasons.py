"""A failure's reason is the cause's one line, on every path, and a failed
video leaves no LLM files.

One batch of four copies of the sample meets a real fault each:

- ``a``: its work folder's disk is full before the run: the driver's first write fails;
- ``b``: the disk fills once the video is planned: the Dask tasks cannot store their chunks;
- ``c``: the disk fills when the analysis starts: the Ray actor cannot store the analysis;
- ``d``: the annotated video cannot be moved into place (a folder has its name),
  the last step of its last output; its LLM examples must not be left behind.

Each work folder (``OUTPUT/.work/<name>``) is a bind mount of a folder on its own
small tmpfs; the file that fills the tmpfs sits beside that folder, out of the
pipeline's reach.
"""

from __future__ import annotations

import contextlib
import csv
import errno
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from pipeline.config import PipelineConfig
from pipeline.errors import OutputError, VideoError, one_line_reason
from pipeline.orchestrator import VideoPipeline

FULL = "No space left on device"


class SmallDisk:
    """A tmpfs whose folder ``data`` is bind-mounted at ``where``."""

    def __init__(self, base: Path, where: Path) -> None:
        self.base = base
        self.where = where

    def fill(self) -> None:
        """Write a file beside the mounted folder until the file system is full."""
        fd = os.open(self.base / "filler", os.O_WRONLY | os.O_CREAT | os.O_APPEND)
        try:
            for block in (1024**2, 4096, 1):
                try:
                    while True:
                        os.write(fd, b"\0" * block)
                except OSError as exc:
                    if exc.errno != errno.ENOSPC:
                        raise
        finally:
            os.close(fd)


@contextlib.contextmanager
def small_disks(root: Path, wheres: dict[str, Path], size: str = "16m"):
    if os.geteuid() != 0:
        pytest.skip("needs root to mount small file systems")
    disks, mounted = {}, []
    try:
        for key, where in wheres.items():
            base = root / f"disk-{key}"
            base.mkdir()
            command = ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(base)]
            mount = subprocess.run(command, capture_output=True)
            if mount.returncode != 0:
                pytest.skip(f"cannot mount a tmpfs here: {mount.stderr.decode().strip()}")
            mounted.append(base)
            (base / "data").mkdir()
            where.mkdir(parents=True)
            subprocess.run(["mount", "--bind", str(base / "data"), str(where)], check=True)
            mounted.append(where)
            disks[key] = SmallDisk(base, where)
        yield disks
    finally:
        for path in reversed(mounted):
            subprocess.run(["umount", str(path)], check=True)


@pytest.fixture(scope="module")
def faults(tmp_path_factory, sample_video):
    root = tmp_path_factory.mktemp("reasons")
    clips = root / "clips"
    clips.mkdir()
    for name in "abcd":
        shutil.copy(sample_video, clips / f"{name}.mp4")
    output = root / "output"
    (output / "d_annotated.mp4").mkdir(parents=True)  # the annotated video of d cannot be moved into place
    config = PipelineConfig(
        output_dir=str(output),
        models_dir=str(root / "models"),
        llm_data_dir=str(root / "llm"),
        quality="fast",
        workers=2,
        report=False,
        chunk_retries=0,  # a full disk stays full: retries would only take time
    )
    wheres = {name: output / ".work" / name for name in "abc"}
    with small_disks(root, wheres) as disks:
        disks["a"].fill()
        fill_at = {("b", "planned"): disks["b"], ("c", "analyze"): disks["c"]}
        stages: list[tuple[str, str]] = []

        def progress(event) -> None:
            stages.append((event.name, event.stage))
            disk = fill_at.pop((event.name, event.stage), None)
            if disk is not None:
                disk.fill()

        with VideoPipeline(config, progress=progress) as pipeline:
            batch = pipeline.process(sorted(clips.iterdir()))
    with open(output / "summary.csv", encoding="utf-8", newline="") as fh:
        rows = {row["name"]: row for row in csv.DictReader(fh)}
    results = {r.name: r for r in batch.videos}
    return root, results, rows, stages


def _clean(text: str) -> None:
    """No terminal codes, reprs, engine wrappers or Python's errno prefix."""
    for bad in ("\x1b", "RayTaskError", "ray::", "repr=", "pid=", "object at 0x", "[Errno", "OSError:", "\n"):
        assert bad not in text, text


def _reason(faults, name: str) -> str:
    _, results, rows, _ = faults
    result = results[name]
    assert not result.success
    assert result.line() == f"FAILED {result.video}: {result.error}"
    assert rows[name]["status"] == "failed" and rows[name]["error"] == result.error
    _clean(result.error)
    return result.error


def test_driver_write_on_a_full_disk(faults):
    root = faults[0]
    manifest = root / "output" / ".work" / "a" / "manifest.json"
    assert _reason(faults, "a") == f"{FULL}: '{manifest}'"


def test_dask_task_write_on_a_full_disk(faults):
    root = faults[0]
    chunks = root / "output" / ".work" / "b"
    assert ("b", "extract") not in faults[3]  # no chunk was stored
    reason = _reason(faults, "b")
    assert reason.startswith(f"{FULL}: '{chunks}/chunk-"), reason


def test_ray_actor_write_on_a_full_disk(faults):
    root = faults[0]
    assert ("c", "analyze") in faults[3]
    assert _reason(faults, "c") == f"{FULL}: '{root / 'output' / '.work' / 'c' / 'analysis'}'"


def test_a_failed_video_leaves_no_llm_files(faults):
    root, results, _, _ = faults
    reason = _reason(faults, "d")
    assert reason.startswith("annotated video: ")
    assert reason.endswith("cannot move the joined file into place: Is a directory")
    assert ("d", "render") in faults[3]
    assert sorted(p.name for p in (root / "llm" / "videos").glob("*")) == []
    assert "llm_examples" not in results["d"].outputs
    assert (root / "models" / "d_pose.json").is_file()  # the other outputs were written: only the LLM files go


# -- the one line, from exceptions raised here ---------------------------------------------
def test_os_error_gives_strerror_and_file_names():
    assert one_line_reason(OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), "/out/x.npz")) == f"{FULL}: '/out/x.npz'"
    assert one_line_reason(OSError(errno.EXDEV, "Invalid cross-device link", "/a", None, "/b")) == (
        "Invalid cross-device link: '/a' -> '/b'"
    )
    assert one_line_reason(OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))) == FULL
    assert one_line_reason(OSError("no strerror")) == "OSError: no strerror"


def test_cause_chain_colour_codes_and_reprs():
    try:
        try:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), "/w/chunk.npz")
        except OSError as inner:
            raise RuntimeError("\x1b[36mray::Actor.run()\x1b[39m (pid=1, repr=<m.A object at 0x7f>)") from inner
    except RuntimeError as exc:
        assert one_line_reason(exc) == f"{FULL}: '/w/chunk.npz'"
    message = "\x1b[36mray::Actor.run()\x1b[39m (pid=1, ip=127.0.0.1, repr=<m.A object at 0x7fe>)\nTraceback..."
    assert one_line_reason(ValueError(message)) == "ValueError: ray::Actor.run()"
    try:
        try:
            raise OSError(errno.EACCES, "Permission denied")
        except OSError as inner:
            raise OutputError("report: cannot write /x (Permission denied)") from inner
    except OutputError as exc:
        assert one_line_reason(exc) == "report: cannot write /x (Permission denied)"  # its own message says it
    assert one_line_reason(VideoError("/v.mp4", "empty file (0 bytes)")) == "empty file (0 bytes)"
    assert one_line_reason(KeyError()) == "KeyError"
