"""Jobs and failure isolation: a driver killed with SIGKILL resumes where it
stopped and produces the same outputs as an uninterrupted run; a Dask worker
killed mid-run costs a retry, not a frame; changed settings invalidate the cache;
a finished video that misses one output gets that output alone."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import psutil
from conftest import REPO, run_cli, stop_leftovers

from pipeline.config import PipelineConfig
from pipeline.orchestrator import VideoPipeline
from pipeline.workdir import ANALYSIS_FORMAT

# Small chunks: many of them, so a kill lands between finished and unfinished ones.
ARGS = ("--quality", "fast", "--batch_size", "24", "--workers", "2", "--no_report", "--quiet")


def _chunks(folder: Path) -> dict[str, tuple[int, int]]:
    """chunk file name -> (inode, mtime_ns): a rewritten file changes both."""
    return {p.name: (p.stat().st_ino, p.stat().st_mtime_ns) for p in sorted(folder.glob("chunk-*.npz"))}


def test_sigkill_of_the_driver_then_rerun_recomputes_only_unfinished_chunks(tmp_path, sample_video):
    killed, clean = tmp_path / "killed", tmp_path / "clean"
    killed.mkdir()
    clean.mkdir()
    args = ("--video", str(sample_video), "--output", "out", "--models", "models", *ARGS)
    child = subprocess.Popen(
        [sys.executable, str(REPO / "pipeline.py"), *args],
        cwd=killed,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    work = killed / "out" / ".work" / "demo"
    deadline = time.monotonic() + 300
    while len(_chunks(work)) < 3 and time.monotonic() < deadline and child.poll() is None:
        time.sleep(0.05)
    family = psutil.Process(child.pid).children(recursive=True)
    child.send_signal(signal.SIGKILL)
    child.wait(timeout=30)
    stop_leftovers(family)
    before = _chunks(work)
    assert 3 <= len(before) < 10, before  # killed mid-run: some chunks done, some not
    assert not (killed / "models" / "demo_pose.json").exists()

    resumed = run_cli(*args, cwd=killed)
    assert resumed.returncode == 0, resumed.stderr
    assert f"{len(before)}/10 chunks from an earlier run" in resumed.stdout
    after = _chunks(work)
    assert len(after) == 10
    assert {name: after[name] for name in before} == before  # finished chunks were not recomputed

    uninterrupted = run_cli(*args, cwd=clean)
    assert uninterrupted.returncode == 0, uninterrupted.stderr
    for output in ("models/demo_pose.json", "out/demo_annotated.mp4"):
        assert (killed / output).read_bytes() == (clean / output).read_bytes(), output

    again = run_cli(*args, cwd=killed)  # a finished video is skipped
    assert again.returncode == 0 and "complete from an earlier run" in again.stdout
    assert _chunks(work) == after


def test_changed_settings_invalidate_the_cache_and_force_recomputes(tmp_path, sample_video):
    args = ("--video", str(sample_video), "--output", "out", "--models", "models", *ARGS, "--no_video")
    assert run_cli(*args, cwd=tmp_path).returncode == 0
    work = tmp_path / "out" / ".work" / "demo"
    first = _chunks(work)
    forced = run_cli(*args, "--force", cwd=tmp_path)
    assert forced.returncode == 0 and "earlier run" not in forced.stdout
    assert all(_chunks(work)[name] != first[name] for name in first)
    other = run_cli(*args, "--warmup_frames", "8", cwd=tmp_path)  # changes every chunk's landmarks
    assert other.returncode == 0 and "earlier run" not in other.stdout
    manifest = json.loads((work / "manifest.json").read_text())
    assert manifest["extract"]["chunks"][1][0] == 24 - 8


def test_a_killed_dask_worker_costs_a_retry_not_a_frame(tmp_path, sample_video):
    config = PipelineConfig(
        output_dir=str(tmp_path / "out"),
        models_dir=str(tmp_path / "models"),
        llm_data_dir=str(tmp_path / "llm"),
        quality="fast",
        workers=2,
        batch_size=24,
        render_video=False,
        report=False,
    )
    work = tmp_path / "out" / ".work" / "demo"
    killed: list[int] = []
    with VideoPipeline(config) as pipeline:
        pids = pipeline.dask.worker_pids()

        def kill_one_worker() -> None:
            deadline = time.monotonic() + 300
            while len(_chunks(work)) < 2 and time.monotonic() < deadline:
                time.sleep(0.02)
            os.kill(pids[0], signal.SIGKILL)
            killed.append(pids[0])

        killer = threading.Thread(target=kill_one_worker)
        killer.start()
        batch = pipeline.process([sample_video])
        killer.join()
        after = pipeline.dask.worker_pids()
    result = batch.videos[0]
    assert killed and killed[0] not in after and len(after) == 2  # the nanny replaced it
    assert result.success, result.error
    assert result.frames == 230
    pose = json.loads(Path(result.outputs["pose_json"]).read_text())
    assert [f["frame"] for f in pose["frames"]] == list(range(230))


def _files(folder: Path) -> dict[str, tuple[int, int, str]]:
    """relative path -> (inode, mtime_ns, sha256) of every file under ``folder``: a rewritten file changes them."""
    return {
        str(p.relative_to(folder)): (p.stat().st_ino, p.stat().st_mtime_ns, hashlib.sha256(p.read_bytes()).hexdigest())
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def test_a_deleted_output_is_the_only_one_written_again(tmp_path, sample_video):
    args = ("--video", str(sample_video), "--output", "out", "--models", "models", "--llm_data", "llm")
    args += ("--quality", "fast", "--batch_size", "24", "--workers", "2", "--quiet")
    first = run_cli(*args, cwd=tmp_path)
    assert first.returncode == 0, first.stderr[-3000:]
    work = tmp_path / "out" / ".work" / "demo"
    kept = {
        "models/demo_pose.json", "out/demo_report.html", "out/demo_angles.csv",
        "llm/videos/demo.jsonl", "llm/videos/demo.segments.jsonl", "llm/videos/demo.info.json",
    }  # fmt: skip
    before = _files(tmp_path)
    assert kept <= before.keys()
    work_before = {name: before[name] for name in before if name.startswith("out/.work/demo/chunk-")}
    work_before |= {name: before[name] for name in before if name.startswith("out/.work/demo/analysis/")}
    assert len([n for n in work_before if "/analysis/" in n]) > 5  # the analysis is kept after success
    annotated = tmp_path / "out" / "demo_annotated.mp4"
    annotated_bytes = annotated.read_bytes()
    annotated.unlink()

    again = run_cli(*args, "--stats", "again.json", cwd=tmp_path)
    assert again.returncode == 0, again.stderr[-3000:]
    assert "only annotated_video written (the other outputs were complete)" in again.stdout
    after = _files(tmp_path)
    assert {name: after[name] for name in kept} == {name: before[name] for name in kept}  # not rewritten
    assert {name: after[name] for name in work_before} == work_before  # no chunk, no analysis written again
    assert json.loads((tmp_path / "again.json").read_text())["chunks"] == []  # nothing extracted
    assert annotated.read_bytes() == annotated_bytes  # the same video as before
    manifest = json.loads((work / "manifest.json").read_text())
    assert manifest["complete"]["result"]["outputs"]["annotated_video"] == "out/demo_annotated.mp4"
    assert set(manifest["complete"]["result"]["outputs"]) == {
        "angles_csv", "annotated_video", "llm_examples", "opensim", "pose_json", "report", "tables"
    }  # fmt: skip

    # A stored analysis of an earlier layout (before lanes: no format, no person map) is not
    # read: the analysis is redone from the kept chunks, and the output is the same.
    meta_path = work / "analysis" / "meta.json"
    meta = json.loads(meta_path.read_text())
    assert meta.pop("format") == ANALYSIS_FORMAT
    meta_path.write_text(json.dumps(meta))
    (work / "analysis" / "person.npy").unlink()
    annotated.unlink()
    third = run_cli(*args, "--stats", "third.json", cwd=tmp_path)
    assert third.returncode == 0, third.stderr[-3000:]
    assert json.loads((tmp_path / "third.json").read_text())["chunks"] == []  # the chunks were kept
    assert annotated.read_bytes() == annotated_bytes
    assert json.loads(meta_path.read_text())["format"] == ANALYSIS_FORMAT
    assert (work / "analysis" / "person.npy").exists()
