"""Shared fixtures: the real sample clip and model (fetched once), the plain
sequential MediaPipe reference, a helper to run the command line, and the guard
that fails the session when a test writes into the working tree's output
folders (tests write only under their temporary folders)."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from synthetic import STATURE_M, make_jump_clip, make_repetition_clip

from pipeline.config import PersonHeight, PipelineConfig

REPO = Path(__file__).resolve().parents[1]
# The folders a run writes by default (relative to its working directory): a test that
# leaves one of them at its default while running in the repository writes here.
GUARDED_FOLDERS = ("output", "models", "llm_training_data", "llm_models")


def tree_snapshot(root: Path, folders: tuple[str, ...] = GUARDED_FOLDERS) -> dict[str, tuple[int, int] | None]:
    """Every file and folder under ``root/<folder>``: relative path -> (size, mtime_ns).

    Folders count by their mtime, so a file written and removed again shows too.
    """
    found: dict[str, tuple[int, int] | None] = {}
    for name in folders:
        top = root / name
        if not top.exists():
            found[name] = None
            continue
        for path in [top, *sorted(top.rglob("*"))]:
            stat = path.lstat()
            found[str(path.relative_to(root))] = (stat.st_size if path.is_file() else -1, stat.st_mtime_ns)
    return found


def snapshot_changes(before: dict, after: dict) -> list[str]:
    """What differs between two snapshots, one line each."""
    lines = [f"new: {p}" for p in sorted(after.keys() - before.keys())]
    lines += [f"gone: {p}" for p in sorted(before.keys() - after.keys())]
    lines += [f"changed: {p}" for p in sorted(before.keys() & after.keys()) if before[p] != after[p]]
    return lines


@pytest.fixture(scope="session", autouse=True)
def working_tree_untouched():
    """Fails the session (an error at the last test's teardown) when any test wrote
    into the repository's output, models, LLM data or LLM models folders."""
    before = tree_snapshot(REPO)
    yield
    changes = snapshot_changes(before, tree_snapshot(REPO))
    assert not changes, (
        f"the tests wrote into the working tree ({len(changes)} change(s)); pass tmp folders for "
        "output_dir, models_dir and llm_data_dir: " + "; ".join(changes[:12])
    )


@pytest.fixture(scope="session")
def sample_video() -> Path:
    from pipeline.assets import fetch_sample_video

    return fetch_sample_video(REPO / "public")


@pytest.fixture(scope="session")
def lite_model():
    from pipeline.pose.models import resolve_model

    return resolve_model("lite")


def sequential_landmarks(video: Path, model_path: str, num_poses: int = 1) -> tuple[np.ndarray, float]:
    """The reference: one landmarker, every frame in order, nothing else.

    Returns image landmarks ``[F, num_poses, 33, 4]`` (NaN where absent) and fps.
    """
    import cv2
    import mediapipe as mp
    from mediapipe.tasks.python import BaseOptions
    from mediapipe.tasks.python.vision import PoseLandmarker, PoseLandmarkerOptions, RunningMode

    options = PoseLandmarkerOptions(
        base_options=BaseOptions(model_asset_path=model_path),
        running_mode=RunningMode.VIDEO,
        num_poses=num_poses,
    )
    cap = cv2.VideoCapture(str(video))
    fps = cap.get(cv2.CAP_PROP_FPS)
    frames = []
    with PoseLandmarker.create_from_options(options) as landmarker:
        index = 0
        while True:
            ok, frame = cap.read()
            if not ok:
                break
            image = mp.Image(image_format=mp.ImageFormat.SRGB, data=cv2.cvtColor(frame, cv2.COLOR_BGR2RGB))
            result = landmarker.detect_for_video(image, int(round(index * 1000.0 / fps)))
            row = np.full((num_poses, 33, 4), np.nan, dtype=np.float32)
            for slot, landmarks in enumerate(result.pose_landmarks):
                row[slot] = [(p.x, p.y, p.z, p.visibility) for p in landmarks]
            frames.append(row)
            index += 1
    cap.release()
    return np.stack(frames), fps


@pytest.fixture(scope="session")
def sequential_reference(sample_video, lite_model):
    return sequential_landmarks(sample_video, lite_model.path)


@pytest.fixture(scope="session")
def sequential_track(sample_video, lite_model):
    """``sequential_track(num_poses) -> (PoseChunk, TrackMeta)``: the whole sample clip through
    the pipeline's own chunk loop in one sequential chunk, each ``num_poses`` computed once (~8 s)."""
    from pipeline.analysis.analyzer import TrackMeta
    from pipeline.pose.backends.mediapipe import MediaPipeBackend, MediaPipeSettings
    from pipeline.pose.chunks import run_chunk
    from pipeline.video.plan import plan_chunks
    from pipeline.video.probe import probe_video

    info = probe_video(str(sample_video))
    spec = plan_chunks(info, info.frame_count, 0)[0]
    meta = TrackMeta(info.width, info.height, info.fps)
    cache = {}

    def track(num_poses: int):
        if num_poses not in cache:
            backend = MediaPipeBackend(MediaPipeSettings(lite_model.path, lite_model.sha256, num_poses=num_poses))
            cache[num_poses] = run_chunk(backend, spec)
        return cache[num_poses], meta

    return track


def run_cli(*args: str, cwd: Path, env: dict | None = None, timeout: float = 600) -> subprocess.CompletedProcess:
    """Run ``python pipeline.py ARGS`` as a user would, in ``cwd``; ``env`` values of None unset a variable."""
    full_env = dict(os.environ)
    for name, value in (env or {}).items():
        if value is None:
            full_env.pop(name, None)
        else:
            full_env[name] = value
    return subprocess.run(
        [sys.executable, str(REPO / "pipeline.py"), *args],
        cwd=cwd,
        env=full_env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def error_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith("error:") or line.startswith("FAILED")]


def alive(procs: list) -> list:
    """The ``psutil.Process``es of ``procs`` still running: same PID and start time (psutil checks), not a zombie."""
    import psutil

    running = []
    for proc in procs:
        try:
            if proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE:
                running.append(proc)
        except psutil.Error:
            continue
    return running


def stop_leftovers(processes: list) -> None:
    """Stop processes of a killed run that outlived it (only those, by PID): 20 s to end, then SIGKILL."""
    import psutil

    _, still = psutil.wait_procs(processes, timeout=20)
    for proc in still:
        with contextlib.suppress(psutil.NoSuchProcess):
            proc.kill()
    psutil.wait_procs(still, timeout=10)


@pytest.fixture
def started():
    """Processes a test started (and their descendants): whatever still runs at the end is killed, by PID."""
    procs: list = []
    yield procs
    for proc in alive(procs):
        proc.kill()


@pytest.fixture(scope="session")
def s3():
    """A real S3-compatible server (moto) on 127.0.0.1 for the session."""
    from s3_server import s3_server

    with s3_server() as server:
        yield server


@pytest.fixture
def s3_bucket(s3, monkeypatch):
    """A fresh bucket on the session's S3 server, with this process's environment pointed at it;
    yields ``s3://bucket``."""
    import uuid

    for name, value in s3.env().items():
        monkeypatch.setenv(name, value)
    fs = s3.filesystem()
    bucket = f"test-{uuid.uuid4().hex[:12]}"
    fs.call_s3("create_bucket", Bucket=bucket)  # (fs.mkdir adds a LocationConstraint moto refuses for us-east-1)
    yield f"s3://{bucket}"
    fs.rm(bucket, recursive=True)


# -- the batch the output tests share: two synthetic clips with known motion and the sample clip,
# run once with every output (and heights in metres) -------------------------------------------
SAMPLE_HEIGHT_M = 1.8  # the man jumping off the box in the sample (person 0), for the metres
# The synthetic jumper is the sample's man, scaled to STATURE_M by the clip's maker.
HEIGHTS = (PersonHeight("jump", STATURE_M), PersonHeight("demo.mp4", SAMPLE_HEIGHT_M, person=0))


@pytest.fixture(scope="session")
def clips(tmp_path_factory, sample_video, lite_model):
    folder = tmp_path_factory.mktemp("clips")
    jump = make_jump_clip(folder / "jump.mp4", sample_video, model_path=lite_model.path)
    reps = make_repetition_clip(folder / "reps.mp4", sample_video, model_path=lite_model.path)
    return {"jump": (folder / "jump.mp4", jump), "reps": (folder / "reps.mp4", reps)}


@pytest.fixture(scope="session")
def batch(tmp_path_factory, clips, sample_video):
    """One run over the two synthetic clips and the sample clip."""
    from pipeline.orchestrator import VideoPipeline

    work = tmp_path_factory.mktemp("run")
    config = PipelineConfig(
        quality="fast", workers=2, person_height=HEIGHTS,
        output_dir=str(work / "output"), models_dir=str(work / "models"), llm_data_dir=str(work / "llm"),
    )  # fmt: skip
    with VideoPipeline(config) as pipeline:
        result = pipeline.process([clips["jump"][0], clips["reps"][0], sample_video])
    assert result.success, [v.error for v in result.failed]
    return result
