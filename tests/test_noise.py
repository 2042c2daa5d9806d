"""A plain run prints nothing to the terminal that is not for the user: no
MediaPipe or TensorFlow Lite log lines (unless ``--verbose``), and the set-up
no setuptools deprecation warning."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import warnings

import pytest
from conftest import REPO, run_cli

MEDIAPIPE_LINES = re.compile(
    r"inference_feedback_manager\.cc|landmark_projection_calculator\.cc|Logging before InitGoogle|"
    r"Created TensorFlow Lite XNNPACK delegate|^[IW]\d{4} \d\d:\d\d:",
    re.MULTILINE,
)


def test_plain_run_prints_no_mediapipe_log_lines(tmp_path, sample_video):
    proc = run_cli("--video", str(sample_video), "--quality", "fast", "--workers", "2", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert MEDIAPIPE_LINES.findall(proc.stderr) == [], proc.stderr


TRACK = """
import os, sys
from pipeline.pose import MediaPipeSettings, resolve_model
from pipeline.pose.chunks import track_chunk
from pipeline.video.plan import plan_chunks
from pipeline.video.probe import probe_video

model = resolve_model("lite")
settings = MediaPipeSettings(model.path, model.sha256, num_poses=2)
spec = plan_chunks(probe_video(sys.argv[1]), 30, 0, None, handover_s=0)[0]
print("before", file=sys.stderr, flush=True)
os.write(2, b"E0000 00:00:1.5 7 some_calculator.cc:1] an error line passes\\n")
chunk = track_chunk(spec, settings)
print("after", chunk.num_frames, file=sys.stderr, flush=True)
"""


def _track(sample_video, show: str | None) -> str:
    env = {k: v for k, v in os.environ.items() if k != "POSE_PIPELINE_NATIVE_LOG"}
    env["PYTHONPATH"] = str(REPO)
    if show is not None:
        env["POSE_PIPELINE_NATIVE_LOG"] = show
    proc = subprocess.run(
        [sys.executable, "-c", TRACK, str(sample_video)], env=env, capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, proc.stderr
    return proc.stderr


def test_backend_holds_back_mediapipe_lines_and_keeps_the_rest(sample_video):
    stderr = _track(sample_video, None)
    assert MEDIAPIPE_LINES.findall(stderr) == [], stderr
    lines = stderr.splitlines()
    assert lines[0] == "before" and lines[-1] == "after 30", stderr
    assert "E0000 00:00:1.5 7 some_calculator.cc:1] an error line passes" in lines


def test_backend_shows_mediapipe_lines_when_asked(sample_video):
    """What ``--verbose`` sets: the lines the filter holds back are really there."""
    stderr = _track(sample_video, "1")
    found = MEDIAPIPE_LINES.findall(stderr)
    assert any("inference_feedback_manager" in f for f in found), stderr
    assert any("XNNPACK" in f for f in found), stderr


def test_setup_prints_no_setuptools_deprecation_warning():
    pytest.importorskip("setuptools")
    from setuptools.config.pyprojecttoml import apply_configuration
    from setuptools.dist import Distribution

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        dist = apply_configuration(Distribution(), REPO / "pyproject.toml")
    assert [str(w.message).splitlines()[0] for w in caught] == []
    assert dist.metadata.license_expression == "MIT"
