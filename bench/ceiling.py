"""The ceiling: N plain single-process MediaPipe loops over the same clip, run at the same time.

Each loop is what a user would write without this project: OpenCV reads a frame, converts it
to RGB, and one PoseLandmarker (VIDEO mode, the preset's model and confidences) tracks it. The
N loops start together (a barrier) and the aggregate is every frame they tracked divided by the
time from the common start to the last loop's end.

    .venv/bin/python bench/ceiling.py [--video public/demo.mp4] [--loops 2] [--passes 4]
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pipeline.pose.backends.mediapipe import MediaPipeSettings  # noqa: E402 - after the repository is on the path


@dataclass(frozen=True)
class LoopSettings:
    video: str
    estimator: MediaPipeSettings  # the pipeline's landmarker settings for the same preset
    passes: int = 4  # times the clip is read, one landmarker and one clock for all of them


def plain_loop(settings: LoopSettings, barrier=None) -> dict:
    """Track every frame of ``settings.video`` ``passes`` times; returns frames and timing."""
    import cv2
    import mediapipe
    from mediapipe.tasks.python import BaseOptions
    from mediapipe.tasks.python.vision import PoseLandmarker, PoseLandmarkerOptions, RunningMode

    landmarker_settings = settings.estimator
    options = PoseLandmarkerOptions(
        base_options=BaseOptions(model_asset_path=landmarker_settings.model_path),
        running_mode=RunningMode.VIDEO,
        num_poses=landmarker_settings.num_poses,
        min_pose_detection_confidence=landmarker_settings.min_detection_confidence,
        min_pose_presence_confidence=landmarker_settings.min_presence_confidence,
        min_tracking_confidence=landmarker_settings.min_tracking_confidence,
    )
    frames = detected = 0
    with PoseLandmarker.create_from_options(options) as landmarker:
        if barrier is not None:
            barrier.wait()
        started = time.time()
        timestamp_ms = 0
        for _ in range(settings.passes):
            capture = cv2.VideoCapture(settings.video)
            fps = capture.get(cv2.CAP_PROP_FPS) or 30.0
            while True:
                ok, frame = capture.read()
                if not ok:
                    break
                rgb = cv2.cvtColor(frame, cv2.COLOR_BGR2RGB)
                result = landmarker.detect_for_video(
                    mediapipe.Image(image_format=mediapipe.ImageFormat.SRGB, data=rgb), timestamp_ms
                )
                detected += bool(result.pose_landmarks)
                frames += 1
                timestamp_ms += round(1000 / fps)
            capture.release()
        finished = time.time()
    return {"pid": os.getpid(), "frames": frames, "detected": detected, "started": started, "finished": finished}


def _child(settings: LoopSettings, barrier, results) -> None:
    results.put(plain_loop(settings, barrier))


def run_ceiling(settings: LoopSettings, loops: int) -> dict:
    """Run ``loops`` plain loops at once (spawned processes); aggregate frames/s."""
    context = mp.get_context("spawn")
    barrier = context.Barrier(loops)
    results = context.Queue()
    procs = [context.Process(target=_child, args=(settings, barrier, results)) for _ in range(loops)]
    for proc in procs:
        proc.start()
    outcomes = [results.get(timeout=1800) for _ in procs]
    for proc in procs:
        proc.join()
        if proc.exitcode != 0:
            raise RuntimeError(f"a ceiling loop exited with status {proc.exitcode}")
    start = min(o["started"] for o in outcomes)
    end = max(o["finished"] for o in outcomes)
    frames = sum(o["frames"] for o in outcomes)
    per_loop = [o["frames"] / (o["finished"] - o["started"]) for o in outcomes]
    return {
        "loops": loops,
        "passes": settings.passes,
        "frames": frames,
        "wall_s": round(end - start, 3),
        "fps": round(frames / (end - start), 2),
        "fps_per_loop": [round(v, 2) for v in per_loop],
        "detected_share": round(sum(o["detected"] for o in outcomes) / max(1, frames), 3),
        "settings": asdict(settings),
    }


def main() -> None:
    from pipeline.config import QUALITY_PRESETS
    from pipeline.pose.models import resolve_model

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--video", default="public/demo.mp4")
    parser.add_argument("--quality", default="fast", choices=sorted(QUALITY_PRESETS))
    parser.add_argument("--loops", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--passes", type=int, default=4)
    args = parser.parse_args()
    preset = QUALITY_PRESETS[args.quality]
    estimator = MediaPipeSettings.from_preset(preset, resolve_model(preset.pose_model))
    settings = LoopSettings(video=args.video, estimator=estimator, passes=args.passes)
    print(json.dumps(run_ceiling(settings, args.loops), indent=2))


if __name__ == "__main__":
    main()
