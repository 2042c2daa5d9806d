"""Frames per second of the pipeline and of a plain sequential MediaPipe loop on
the same clip, measured in one run.

    .venv/bin/python bench/throughput.py [--video public/demo.mp4] [--quality fast] [--repeat 3]

Prints a table and writes bench/throughput.json. The pipeline figure is taken
two ways: the whole command (engines start included) and per batch with the
engines already running (what a long run sees).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))


def batches(pipeline, video: str, frames: int, repeat: int) -> tuple[list[float], int]:
    """Frames/s of ``repeat`` batches of one video on running engines, and its chunk count."""
    rates = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        batch = pipeline.process([video])
        assert batch.success, batch.videos[0].error
        rates.append(frames / (time.perf_counter() - t0))
    return rates, batch.videos[0].chunks


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--video", default="public/demo.mp4")
    parser.add_argument("--quality", default="fast")
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()

    from conftest import sequential_landmarks

    from pipeline import PipelineConfig, VideoPipeline
    from pipeline.pose.models import resolve_model
    from pipeline.video import probe_video

    info = probe_video(args.video)
    scratch = tempfile.mkdtemp(prefix="bench-")
    # Pose and analysis only; the run with the annotated video and report is measured after.
    config = PipelineConfig(
        quality=args.quality, models_dir=scratch, output_dir=scratch, render_video=False, report=False
    )
    results: dict = {"video": args.video, "frames": info.frame_count, "quality": args.quality}
    results["machine"] = {"cpus": os.cpu_count(), "python": platform.python_version()}

    model_path = resolve_model(config.resolved_pose_model).path  # outside the timed loop
    seq = []
    for _ in range(args.repeat):
        t0 = time.perf_counter()
        sequential_landmarks(Path(args.video), model_path)
        seq.append(info.frame_count / (time.perf_counter() - t0))
    results["sequential_fps"] = max(seq)

    t0 = time.perf_counter()
    with VideoPipeline(config) as pipeline:
        start_s = time.perf_counter() - t0
        warm, first_chunks = batches(pipeline, args.video, info.frame_count, args.repeat)
        pipeline.config = config.with_overrides(render_video=True, report=True)
        with_outputs, _ = batches(pipeline, args.video, info.frame_count, args.repeat)
    whole = time.perf_counter() - t0
    results["pipeline_fps_engines_running"] = max(warm)
    results["pipeline_fps_with_video_and_report"] = max(with_outputs)
    results["pipeline_fps_whole_run_first_batch"] = info.frame_count / (start_s + (info.frame_count / warm[0]))
    results["engine_start_s"] = round(start_s, 2)
    results["timings"] = {k: round(v, 2) for k, v in pipeline.timings.items()}
    results["chunks"] = first_chunks
    results["wall_s"] = round(whole, 2)
    for key, value in results.items():
        if isinstance(value, float):
            results[key] = round(value, 2)
    results["speedup_vs_sequential"] = round(results["pipeline_fps_engines_running"] / results["sequential_fps"], 2)
    print(json.dumps(results, indent=2))
    Path(__file__).with_name("throughput.json").write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
