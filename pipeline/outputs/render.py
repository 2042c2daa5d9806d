"""The annotated video: rendered in frame ranges (each decodes its range again,
draws, encodes an H.264 segment), then the segments are joined without
re-encoding. Engine-free: the Dask tasks call these functions, and so can a loop."""

from __future__ import annotations

import os
import tempfile
import uuid
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from pipeline import storage
from pipeline.analysis.analyzer import Analysis
from pipeline.analysis.sports import SPORT_PROFILES
from pipeline.analysis.store import AnalysisStore
from pipeline.config import PipelineConfig
from pipeline.errors import OutputError, VideoError
from pipeline.outputs.annotate import Annotator, BgrCanvas, YuvCanvas
from pipeline.outputs.registry import DiskNeed, OutputPlan, OutputTask, OutputWriter, VideoOutputs
from pipeline.video.probe import VideoInfo
from pipeline.video.reader import i420_planes, iter_frames, picture_format
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
    threads: int = 1  # the encoder's threads: the cores of the worker that renders it
    output_size: tuple[int, int] | None = None  # (width, height) written; None: the input's
    frame_table_at: str | None = None  # the video's stored frame table (a video on object storage)

    @property
    def out_size(self) -> tuple[int, int]:
        return self.output_size or (self.width, self.height)


def scaled_size(width: int, height: int, video_height: int | None) -> tuple[int, int]:
    """The annotated video's size for ``--video_height``: the input's when None or not
    smaller, else ``video_height`` (rounded down to even) and the width that keeps the
    aspect ratio, rounded to even (4:2:0 needs both)."""
    if video_height is None or video_height >= height:
        return width, height
    out_height = max(2, video_height - video_height % 2)
    out_width = max(2, int(round(width * out_height / height / 2)) * 2)
    return out_width, out_height


def segment_folder(output: str, name: str) -> str:
    """A fresh folder next to the final video for one render's segments (a local
    folder, or a prefix on object storage that the segments are uploaded to)."""
    folder = storage.join(output, f".{name}_segments-{uuid.uuid4().hex[:8]}")
    if storage.is_local(folder):
        storage.local_path(folder).mkdir(parents=True, exist_ok=False)
    return folder


def plan_segments(
    video: str, folder: str, frames: int, width: int, height: int, fps: float, bounds, threads: int = 1,
    video_height: int | None = None, frame_table_at: str | None = None,
) -> list[RenderSpec]:  # fmt: skip
    """Segments over ``[0, frames)`` split at ``bounds`` (the extraction chunk starts), each
    encoded with ``threads`` threads (the cores of the worker that renders it), scaled down
    to ``video_height`` (:func:`scaled_size`)."""
    starts = sorted({b for b in bounds if 0 < b < frames} | {0})
    stops = starts[1:] + [frames]
    size = scaled_size(width, height, video_height)
    size = None if size == (width, height) else size
    return [
        RenderSpec(
            video,
            i,
            a,
            b,
            storage.join(folder, f"segment-{i:05d}.mp4"),
            width,
            height,
            fps,
            threads,
            size,
            frame_table_at,
        )  # fmt: skip
        for i, (a, b) in enumerate(zip(starts, stops))
    ]


def render_segment(spec: RenderSpec, view: Analysis, annotator: Annotator) -> int:
    """Decode, draw and encode frames ``[spec.start, spec.stop)``; ``view`` holds
    exactly those frames. Returns the number of frames written.

    A frame of even size is drawn on its own 4:2:0 planes and encoded from them:
    decoded once, never converted to BGR and back, the source's colour tags kept.
    An odd-sized frame (which 4:2:0 cannot hold exactly) goes through BGR and is
    padded by the writer. With ``spec.output_size``, each frame is scaled down
    (plane by plane, see ``_shrink``) before it is drawn on."""
    if view.track.num_frames != spec.stop - spec.start:
        raise ValueError(f"view: expected {spec.stop - spec.start} frames, got {view.track.num_frames}")
    picture = picture_format(spec.video)
    planar = spec.width % 2 == 0 and spec.height % 2 == 0
    out_width, out_height = spec.out_size
    scaled = spec.out_size != (spec.width, spec.height)
    zoom = (out_width / spec.width, out_height / spec.height)
    source_shape = (spec.height * 3 // 2, spec.width) if planar else (spec.height, spec.width, 3)
    if planar:
        pixel_format, codec_format = "i420", picture.i420_format
        colour = {"color_range": "pc" if picture.full_range else "tv"}
        tags = {"colorspace": picture.colorspace, "color_primaries": picture.primaries, "color_trc": picture.transfer}
        colour |= {key: value for key, value in tags.items() if value}
    else:
        pixel_format, codec_format, colour = "bgr24", "bgr24", None
    written = 0
    writer = SegmentWriter(
        Path(spec.segment_path), out_width, out_height, spec.fps,
        threads=spec.threads, pixel_format=codec_format, colour=colour,
    )  # fmt: skip
    with writer:
        undecodable: list[int] = []
        frames = iter_frames(
            spec.video, spec.start, spec.stop, pixel_format=pixel_format, missing=undecodable,
            table_at=spec.frame_table_at,
        )  # fmt: skip
        for row, (index, frame) in enumerate(frames):
            if frame is None:  # its data could not be decoded: a black frame keeps the video's timing
                frame = (
                    _black(writer.frame_shape, picture.full_range) if planar else np.zeros(writer.frame_shape, np.uint8)
                )
            elif frame.shape != source_shape:
                raise VideoError(spec.video, f"frame {index} is not {spec.width}x{spec.height} like the first")
            elif scaled:
                frame = _scaled(frame, out_width, out_height, planar)
            if planar:
                annotator.draw(YuvCanvas(frame, picture.matrix, picture.full_range), view, row, zoom)
            else:
                annotator.draw(BgrCanvas(frame), view, row, zoom)
            writer.write(frame)
            written += 1
    if written != spec.stop - spec.start:
        Path(spec.segment_path).unlink(missing_ok=True)
        raise VideoError(
            spec.video, f"decoding stopped at frame {spec.start + written} while rendering (expected {spec.stop})"
        )
    return written


def _scaled(frame: np.ndarray, width: int, height: int, planar: bool) -> np.ndarray:
    """``frame`` (I420 when ``planar``, else BGR) scaled down to ``width`` x ``height`` (even)."""
    if not planar:
        return _shrink(frame, width, height)
    out = np.empty((height * 3 // 2, width), np.uint8)
    for source, target in zip(i420_planes(frame), i420_planes(out)):
        target[...] = _shrink(source, target.shape[1], target.shape[0])
    return out


def _shrink(image: np.ndarray, width: int, height: int) -> np.ndarray:
    """Halved by 2x2 averages while at least twice too large, then bilinear: free of aliasing
    like area averaging, at a fifth of its cost at a non-integer ratio (docs/benchmarks.md)."""
    import cv2

    while image.shape[1] >= 2 * width and image.shape[0] >= 2 * height:
        image = cv2.resize(image, (image.shape[1] // 2, image.shape[0] // 2), interpolation=cv2.INTER_AREA)
    return cv2.resize(image, (width, height), interpolation=cv2.INTER_LINEAR)


def _black(shape: tuple[int, ...], full_range: bool) -> np.ndarray:
    """A black I420 frame."""
    frame = np.full(shape, 128, np.uint8)
    frame[: shape[0] * 2 // 3] = 0 if full_range else 16
    return frame


def join_rendered(specs: list[RenderSpec], out_path: str, written: list[int]) -> str:
    """Join the segments into ``out_path`` (atomically) and remove them. Segments on object
    storage are fetched into a local folder, joined there, and the result uploaded (an object
    appears only when its upload completes)."""
    expected = sum(s.stop - s.start for s in specs)
    if sum(written) != expected:
        raise OutputError(f"annotated video: {sum(written)} frames rendered, expected {expected}")
    folder = storage.parent_of(specs[0].segment_path)
    try:
        if storage.is_local(out_path) and storage.is_local(folder):
            join_segments([Path(s.segment_path) for s in specs], Path(out_path), specs[0].fps)
        else:
            with tempfile.TemporaryDirectory(prefix="pose-join-") as tmp:
                local = [Path(tmp, storage.name_of(s.segment_path)) for s in specs]
                for spec, path in zip(specs, local):
                    storage.get_file(spec.segment_path, path)
                joined = Path(tmp, storage.name_of(out_path))
                join_segments(local, joined, specs[0].fps)
                storage.put_file(joined, out_path)
    finally:
        storage.remove_tree(folder)
    return os.fspath(out_path)


# -- the writer ---------------------------------------------------------------------
VIDEO_BYTES_PER_PIXEL = 0.04  # disk estimate: H.264 at CRF 23 (the sample clip needs 0.011)


def render_task(spec: RenderSpec, store: str, annotator: Annotator) -> int:
    """Task: one segment of the annotated video; returns its frame count. A segment
    bound for object storage is encoded into a local file and uploaded."""
    view = AnalysisStore(store).read(spec.start, spec.stop)
    if storage.is_local(spec.segment_path):
        return render_segment(spec, view, annotator)
    with tempfile.TemporaryDirectory(prefix="pose-segment-") as tmp:
        local = replace(spec, segment_path=str(Path(tmp, storage.name_of(spec.segment_path))))
        written = render_segment(local, view, annotator)
        storage.put_file(local.segment_path, spec.segment_path)
    return written


def join_task(specs: list[RenderSpec], out_path: str, *written: int) -> str:
    """Task: join the segments (runs once every segment is done)."""
    return join_rendered(specs, out_path, list(written))


class AnnotatedVideoWriter(OutputWriter):
    """Rendered in the extraction's chunk ranges, in parallel, then joined without re-encoding."""

    name = "annotated_video"
    label = "annotated video"

    def enabled(self, config: PipelineConfig) -> bool:
        return config.render_video

    def location(self, config: PipelineConfig, name: str) -> str:
        return storage.join(config.output_dir, f"{name}_annotated.mp4")

    def disk_need(self, config: PipelineConfig, info: VideoInfo) -> DiskNeed:
        # Segments and the joined file exist side by side until the join ends.
        width, height = scaled_size(info.width, info.height, config.video_height)
        nbytes = 2 * int(info.frame_count * width * height * VIDEO_BYTES_PER_PIXEL)
        return DiskNeed(config.output_dir, self.label, nbytes)

    def plan(self, video: VideoOutputs) -> OutputPlan:
        info, target = video.info, self.target(video)
        folder = segment_folder(storage.parent_of(target), video.name)
        segments = plan_segments(
            video.source, folder, video.frames, info.width, info.height, info.fps, video.chunk_starts,
            threads=video.cores_per_task, video_height=video.config.video_height,
            frame_table_at=video.frame_table_at,
        )  # fmt: skip
        profile = SPORT_PROFILES[video.config.sport_type]
        annotator = Annotator(fps=info.fps, frame_count=video.frames, angles=profile.angles[:4])
        tasks = [
            OutputTask(render_task, (spec, video.store, annotator), f"render-{video.name}-{spec.index}", "render")
            for spec in segments
        ]
        tasks.append(OutputTask(join_task, (segments, target), f"join-{video.name}", after=tuple(range(len(segments)))))
        return OutputPlan(tasks, scratch=(folder,))
