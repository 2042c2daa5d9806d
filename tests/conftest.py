"""Shared fixtures: the real sample clip and model (fetched once), the plain
sequential MediaPipe reference, and a helper to run the command line."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]


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
