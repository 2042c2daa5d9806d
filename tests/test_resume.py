"""Jobs and failure isolation: a driver killed with SIGKILL resumes where it
stopped and produces the same outputs as an uninterrupted run; a Dask worker
killed mid-run costs a retry, not a frame; changed settings invalidate the cache."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import psutil
from conftest import REPO, run_cli

from pipeline.config import PipelineConfig
from pipeline.orchestrator import VideoPipeline

# Small chunks: many of them, so a kill lands between finished and unfinished ones.
ARGS = ("--quality", "fast", "--batch_size", "24", "--workers", "2", "--no_report", "--quiet")


def _chunks(folder: Path) -> dict[str, tuple[int, int]]:
    """chunk file name -> (inode, mtime_ns): a rewritten file changes both."""
    return {p.name: (p.stat().st_ino, p.stat().st_mtime_ns) for p in sorted(folder.glob("chunk-*.npz"))}


def _stop_leftovers(processes: list[psutil.Process]) -> None:
    """Stop processes of the killed run that outlived it (only those, by PID)."""
    gone, alive = psutil.wait_procs(processes, timeout=20)
    for proc in alive:
        with contextlib.suppress(psutil.NoSuchProcess):
            proc.kill()
    psutil.wait_procs(alive, timeout=10)


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
    _stop_leftovers(family)
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
