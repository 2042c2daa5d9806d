"""Encoder settings for the annotated video, by measurement.

    PYTHONPATH=. .venv/bin/python bench/render.py [--video public/demo.mp4] [--out bench/render.json]

For each x264 preset and CRF: the sample's frames, decoded once beforehand in their own
4:2:0 planes (what the render draws on), are encoded by ``SegmentWriter`` with one thread
(the render gives each encoder the cores of its worker: one here), and the file is
compared with the undrawn source frames by FFmpeg's ``ssim`` and ``psnr`` filters: the
quality of the picture away from the drawing. Prints a table and writes the figures as
JSON. Timings are the best of ``--passes`` passes.
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from pipeline.video.reader import iter_frames, picture_format
from pipeline.video.writer import SegmentWriter, ffmpeg_exe

SETTINGS = (
    ("veryfast", 23),
    ("superfast", 23),
    ("superfast", 25),
    ("superfast", 27),
    ("ultrafast", 23),
    ("ultrafast", 27),
    ("ultrafast", 30),
    ("faster", 23),
)


def encode(frames: list[np.ndarray], path: Path, size: tuple[int, int], fps: float, preset: str, crf: int, fmt):
    width, height = size
    started = time.perf_counter()
    with SegmentWriter(path, width, height, fps, preset=preset, crf=crf, threads=1, pixel_format=fmt) as writer:
        for frame in frames:
            writer.write(frame)
    return time.perf_counter() - started


def quality(encoded: Path, source: str, frames: int) -> dict:
    """SSIM (all planes) and PSNR (luma, all planes) of ``encoded`` against the source's first ``frames`` frames."""
    graph = "[0:v]split[a0][a1];[1:v]split[b0][b1];[a0][b0]ssim;[a1][b1]psnr"
    command = [ffmpeg_exe(), "-hide_banner", "-nostdin", "-i", str(encoded), "-i", source]
    command += ["-frames:v", str(frames), "-lavfi", graph, "-f", "null", "-"]
    text = subprocess.run(command, capture_output=True, text=True, check=True).stderr
    ssim = re.search(r"SSIM Y:([\d.]+).*All:([\d.]+)", text)
    psnr = re.search(r"PSNR y:([\d.]+).*average:([\d.]+)", text)
    return {
        "ssim_y": float(ssim.group(1)),
        "ssim": float(ssim.group(2)),
        "psnr_y_db": float(psnr.group(1)),
        "psnr_db": float(psnr.group(2)),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--video", default="public/demo.mp4")
    parser.add_argument("--passes", type=int, default=2)
    parser.add_argument("--out", type=Path, default=Path("bench/render.json"))
    args = parser.parse_args(argv)
    picture = picture_format(args.video)
    frames = [frame for _, frame in iter_frames(args.video, 0, None, pixel_format="i420")]
    height = frames[0].shape[0] * 2 // 3
    size = (frames[0].shape[1], height)
    import av

    with av.open(args.video) as container:
        fps = float(container.streams.video[0].average_rate)
    rows = []
    with tempfile.TemporaryDirectory(prefix="render-bench-") as tmp:
        for preset, crf in SETTINGS:
            path = Path(tmp) / f"{preset}-{crf}.mp4"
            seconds = min(encode(frames, path, size, fps, preset, crf, picture.i420_format) for _ in range(args.passes))
            row = {"preset": preset, "crf": crf, "fps": round(len(frames) / seconds, 1)}
            row["bytes_per_frame"] = round(path.stat().st_size / len(frames))
            row |= quality(path, args.video, len(frames))
            rows.append(row)
            print(json.dumps(row), file=sys.stderr)
    result = {"video": args.video, "size": list(size), "frames": len(frames), "threads": 1, "settings": rows}
    args.out.write_text(json.dumps(result, indent=1) + "\n")
    print("| preset | CRF | frames/s (1 thread) | KB per frame | SSIM | PSNR Y dB |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        print(
            f"| {r['preset']} | {r['crf']} | {r['fps']} | {r['bytes_per_frame'] / 1000:.1f} | {r['ssim']:.4f} "
            f"| {r['psnr_y_db']:.2f} |"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
