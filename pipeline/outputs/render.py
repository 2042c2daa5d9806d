"""The annotated video: rendered in frame ranges (each decodes its range again,
draws, encodes an H.264 segment), then the segments are joined without
re-encoding. Engine-free: the Dask tasks call these functions, and so can a loop."""

from __future__ import annotations

import os
import shutil
import uuid
from dataclasses import dataclass
from pathlib import Path

from pipeline.analysis.analyzer import Analysis
from pipeline.errors import OutputError, VideoError
from pipeline.outputs.annotate import Annotator
from pipeline.video.reader import iter_frames
from pipeline.video.writer import SegmentWriter, join_segments


@dataclass(frozen=True)
class RenderSpec:
    """One segment: frames ``[start, stop)`` of ``video`` into ``segment_path``."""

    video: str
    index: int
    start: int
    stop: int
    segment_path: str
    width: int
    height: int
    fps: float


def segment_folder(output: Path, name: str) -> Path:
    """A fresh folder next to the final video for one render's segments."""
    folder = output / f".{name}_segments-{uuid.uuid4().hex[:8]}"
    folder.mkdir(parents=True, exist_ok=False)
    return folder


def plan_segments(
    video: str, folder: Path, frames: int, width: int, height: int, fps: float, bounds
) -> list[RenderSpec]:
    """Segments over ``[0, frames)`` split at ``bounds`` (the extraction chunk starts)."""
    starts = sorted({b for b in bounds if 0 < b < frames} | {0})
    stops = starts[1:] + [frames]
    return [
        RenderSpec(video, i, a, b, str(folder / f"segment-{i:05d}.mp4"), width, height, fps)
        for i, (a, b) in enumerate(zip(starts, stops))
    ]


def render_segment(spec: RenderSpec, view: Analysis, annotator: Annotator) -> int:
    """Decode, draw and encode frames ``[spec.start, spec.stop)``; ``view`` holds
    exactly those frames. Returns the number of frames written."""
    if view.track.num_frames != spec.stop - spec.start:
        raise ValueError(f"view: expected {spec.stop - spec.start} frames, got {view.track.num_frames}")
    written = 0
    with SegmentWriter(Path(spec.segment_path), spec.width, spec.height, spec.fps) as writer:
        for row, (index, frame) in enumerate(iter_frames(spec.video, spec.start, spec.stop)):
            if frame.shape[1] != spec.width or frame.shape[0] != spec.height:
                raise VideoError(
                    spec.video,
                    f"frame {index} is {frame.shape[1]}x{frame.shape[0]}, expected {spec.width}x{spec.height}",
                )
            writer.write(annotator.annotate(frame, view, row))
            written += 1
    if written != spec.stop - spec.start:
        Path(spec.segment_path).unlink(missing_ok=True)
        raise VideoError(
            spec.video, f"decoding stopped at frame {spec.start + written} while rendering (expected {spec.stop})"
        )
    return written


def join_rendered(specs: list[RenderSpec], out_path: str, written: list[int]) -> str:
    """Join the segments into ``out_path`` (atomically) and remove them."""
    expected = sum(s.stop - s.start for s in specs)
    if sum(written) != expected:
        raise OutputError(f"annotated video: {sum(written)} frames rendered, expected {expected}")
    folder = Path(specs[0].segment_path).parent
    try:
        join_segments([Path(s.segment_path) for s in specs], Path(out_path), specs[0].fps)
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    return os.fspath(out_path)
