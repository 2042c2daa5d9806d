"""What ``--video_height`` saves: the annotated video rendered at the input's size and scaled down.

    PYTHONPATH=. .venv/bin/python bench/video_height.py [--video public/demo.mp4] [--heights 720,480,360]
                                                        [--passes 2] [--out bench/video_height.json]

Runs the pipeline once on ``--video`` (``--no_video``) for its stored analysis, then renders every
frame of it as one segment, as a render task does on a worker of one core (one OpenCV thread, one
encoder thread), at the input's size and at each height: milliseconds per frame (the best of
``--passes``) and bytes per frame. Prints a table and writes the figures as JSON.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import cv2

from pipeline.analysis.store import AnalysisStore
from pipeline.outputs.annotate import Annotator
from pipeline.outputs.render import RenderSpec, render_segment, scaled_size
from pipeline.video.probe import probe_video

REPO = Path(__file__).resolve().parent.parent


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--video", default="public/demo.mp4")
    parser.add_argument("--heights", default="720,480,360")
    parser.add_argument("--passes", type=int, default=2)
    parser.add_argument("--out", type=Path, default=Path("bench/video_height.json"))
    args = parser.parse_args(argv)
    cv2.setNumThreads(1)
    video = str(Path(args.video).resolve())
    info = probe_video(video)
    with tempfile.TemporaryDirectory() as work:
        command = [sys.executable, str(REPO / "pipeline.py"), "--video", video, "--quality", "fast", "--no_video",
                   "--no_report", "--no_llm_data", "--quiet", "--output", "out", "--models", "models"]  # fmt: skip
        subprocess.run(command, cwd=work, check=True)
        (store,) = Path(work, "out", ".work").glob("*/analysis")
        view = AnalysisStore(str(store)).read(0, info.frame_count)
        annotator = Annotator(fps=info.fps, frame_count=info.frame_count)
        rows = []
        for height in [None] + [int(h) for h in args.heights.split(",")]:
            size = scaled_size(info.width, info.height, height)
            best, nbytes = float("inf"), 0
            for _ in range(args.passes):
                path = Path(work, f"segment-{height}.mp4")
                spec = RenderSpec(video, 0, 0, info.frame_count, str(path), info.width, info.height, info.fps, 1,
                                  None if size == (info.width, info.height) else size)  # fmt: skip
                started = time.perf_counter()
                render_segment(spec, view, annotator)
                best = min(best, time.perf_counter() - started)
                nbytes = path.stat().st_size
            rows.append({"video_height": height, "size": list(size), "ms_per_frame": round(best / info.frame_count * 1e3, 2),
                         "kib_per_frame": round(nbytes / info.frame_count / 1024, 1)})  # fmt: skip
    full = rows[0]
    print(f"{'video_height':>12} {'size':>10} {'ms/frame':>9} {'time':>6} {'KiB/frame':>10} {'bytes':>6}")
    for row in rows:
        print(f"{row['video_height'] or 'input':>12} {'x'.join(map(str, row['size'])):>10} {row['ms_per_frame']:>9.2f} "
              f"{row['ms_per_frame'] / full['ms_per_frame']:>6.2f} {row['kib_per_frame']:>10.1f} "
              f"{row['kib_per_frame'] / full['kib_per_frame']:>6.2f}")  # fmt: skip
    args.out.write_text(json.dumps({"video": args.video, "frames": info.frame_count, "rows": rows}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
