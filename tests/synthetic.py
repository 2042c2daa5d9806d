"""Synthetic clips with known motion, built from one real frame of the sample clip.

A rectangular patch around the man standing still on the box (frame 80 of
``demo.mp4``) is pasted onto a plain canvas and moved along an exact trajectory:

* :func:`make_jump_clip`: vertical ballistic flights ``h(t) = v0 (t - t0) - g/2 (t - t0)^2``
  in metres, converted to pixels with a scale derived from the man's body height;
* :func:`make_repetition_clip`: ``n`` side-to-side cycles
  ``x(t) = A (1 - cos(2 pi (t - t0) / P)) / 2``.

The patch is the only person in every frame, so a pose model sees exactly one
person whose motion is known to the pixel. Offsets are rounded to whole pixels;
the truth records both the exact and the applied values. Frames are encoded with
libx264 at ``-crf 10`` (``yuv420p``) through the ffmpeg binary of imageio-ffmpeg.
"""

from __future__ import annotations

import functools
import math
import subprocess
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

PATCH_FRAME = 80
"""Frame of the sample clip the patch is cut from: the man stands still and upright."""

PATCH_BOX = (500, 40, 780, 500)
"""``(x0, y0, x1, y1)`` of the patch in the sample frame, pixels, end exclusive."""

STATURE_M = 1.75
"""Assumed standing height of the man, metres; sets the pixels-per-metre scale."""

G = 9.81
"""Gravitational acceleration, m/s^2."""

CANVAS_SIZE = (720, 1280)
"""Default canvas ``(width, height)``: portrait, even dimensions."""

FOOT_LANDMARKS = (29, 30, 31, 32)
"""Heels and foot indices of the BlazePose skeleton."""


@dataclass(frozen=True)
class PatchMeasurement:
    """The patch and what the pose model measures in it.

    ``foot_row`` is the row (patch pixels, sub-pixel) of the lowest heel or foot
    index landmark, ``head_row`` the first row of the person's segmentation mask;
    ``body_height_px = foot_row - head_row``.
    """

    image: np.ndarray
    foot_row: float
    head_row: int
    frame_index: int
    box: tuple[int, int, int, int]

    @property
    def body_height_px(self) -> float:
        return self.foot_row - self.head_row

    @property
    def px_per_m(self) -> float:
        return self.body_height_px / STATURE_M


@dataclass(frozen=True)
class Jump:
    """One flight. ``takeoff_frame`` is the last frame on the ground (h = 0),
    ``landing_frame`` the first frame back on the ground; the difference is
    ``flight_time_s * fps`` exactly."""

    takeoff_frame: int
    landing_frame: int
    flight_time_s: float
    jump_height_m: float
    takeoff_velocity_mps: float


@dataclass(frozen=True)
class JumpTruth:
    """Ground truth of a clip written by :func:`make_jump_clip`.

    ``height_m[f]`` is the exact height of frame ``f``; ``offset_px[f]`` the
    whole-pixel upward shift applied to the patch (``round(height_m * px_per_m)``):
    frame ``f`` has the patch's top-left corner at row ``rest_top - offset_px[f]``, column ``left``.
    ``ground_row`` is the canvas row of the lowest foot landmark at rest.
    """

    fps: float
    frame_count: int
    width: int
    height: int
    px_per_m: float
    body_height_px: float
    ground_row: float
    rest_top: int
    left: int
    g: float
    jumps: tuple[Jump, ...]
    height_m: tuple[float, ...]
    offset_px: tuple[int, ...]

    @property
    def max_rounding_px(self) -> float:
        """Largest ``|offset_px - height_m * px_per_m|`` over all frames (< 0.5)."""
        return max(abs(o - h * self.px_per_m) for o, h in zip(self.offset_px, self.height_m))


@dataclass(frozen=True)
class RepetitionTruth:
    """Ground truth of a clip written by :func:`make_repetition_clip`.

    Cycle ``k`` spans frames ``cycle_start_frames[k]`` to
    ``cycle_start_frames[k] + period_frames`` (both at rest) and reaches its
    largest excursion ``amplitude_px`` at ``peak_frames[k]``. ``offset_exact_px[f]``
    is ``x(t_f)``; ``offset_px[f]`` the whole-pixel rightward shift applied:
    frame ``f`` has the patch's top-left corner at row ``top``, column ``rest_left + offset_px[f]``.
    """

    fps: float
    frame_count: int
    width: int
    height: int
    n: int
    period_s: float
    period_frames: int
    amplitude_px: float
    px_per_m: float
    body_height_px: float
    ground_row: float
    top: int
    rest_left: int
    cycle_start_frames: tuple[int, ...]
    peak_frames: tuple[int, ...]
    offset_exact_px: tuple[float, ...]
    offset_px: tuple[int, ...]

    @property
    def max_rounding_px(self) -> float:
        """Largest ``|offset_px - offset_exact_px|`` over all frames (< 0.5)."""
        return max(abs(o - e) for o, e in zip(self.offset_px, self.offset_exact_px))


def read_frame(video: str | Path, index: int) -> np.ndarray:
    """Decode frames in order up to ``index`` and return that one (BGR)."""
    cap = cv2.VideoCapture(str(video))
    try:
        for _ in range(index + 1):
            ok, frame = cap.read()
            if not ok:
                raise ValueError(f"{video}: no frame {index}")
    finally:
        cap.release()
    return frame


def _detect(image_bgr: np.ndarray, model_path: str, num_poses: int) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Image landmarks ``[33, 2]`` in pixels and segmentation masks, one per person found."""
    import mediapipe as mp
    from mediapipe.tasks.python import BaseOptions
    from mediapipe.tasks.python.vision import PoseLandmarker, PoseLandmarkerOptions, RunningMode

    options = PoseLandmarkerOptions(
        base_options=BaseOptions(model_asset_path=model_path),
        running_mode=RunningMode.IMAGE,
        num_poses=num_poses,
        output_segmentation_masks=True,
    )
    height, width = image_bgr.shape[:2]
    rgb = np.ascontiguousarray(cv2.cvtColor(image_bgr, cv2.COLOR_BGR2RGB))
    with PoseLandmarker.create_from_options(options) as landmarker:
        result = landmarker.detect(mp.Image(image_format=mp.ImageFormat.SRGB, data=rgb))
    points = [np.array([(p.x * width, p.y * height) for p in pose]) for pose in result.pose_landmarks]
    masks = [m.numpy_view().reshape(height, width).copy() for m in result.segmentation_masks or []]
    return points, masks


@functools.lru_cache(maxsize=4)
def _measure(video: str, model_path: str) -> PatchMeasurement:
    x0, y0, x1, y1 = PATCH_BOX
    frame = read_frame(video, PATCH_FRAME)
    patch = np.ascontiguousarray(frame[y0:y1, x0:x1])

    for points in _detect(frame, model_path, num_poses=4)[0]:
        inside = (points[:, 0] >= x0) & (points[:, 0] < x1) & (points[:, 1] >= y0) & (points[:, 1] < y1)
        if inside.any() and not inside.all():
            raise ValueError(f"frame {PATCH_FRAME}: a person crosses the patch border {PATCH_BOX}")
        if not inside.any() and points[:, 0].min() < x1 + 40 and points[:, 0].max() > x0 - 40:
            raise ValueError(f"frame {PATCH_FRAME}: another person is next to the patch {PATCH_BOX}")

    points, masks = _detect(patch, model_path, num_poses=4)
    if len(points) != 1:
        raise ValueError(f"frame {PATCH_FRAME}: {len(points)} people in the patch, expected 1")
    foot_row = float(points[0][list(FOOT_LANDMARKS), 1].max())
    rows = np.flatnonzero((masks[0] > 0.5).any(axis=1))
    head_row = int(rows[0])
    if not (0 < head_row < foot_row < patch.shape[0] - 1):
        raise ValueError(f"frame {PATCH_FRAME}: head row {head_row}, foot row {foot_row:.1f} not inside the patch")
    patch.setflags(write=False)
    return PatchMeasurement(patch, foot_row, head_row, PATCH_FRAME, PATCH_BOX)


def measure_patch(sample_video: str | Path, model_path: str | None = None) -> PatchMeasurement:
    """Cut the patch and measure it with the pose model (cached per video and model).

    Checks that the patch holds exactly one person and that no other person of
    the frame reaches into it or its 40 px surroundings.
    """
    if model_path is None:
        from pipeline.pose.models import resolve_model

        model_path = resolve_model("lite").path
    return _measure(str(Path(sample_video).resolve()), str(model_path))


def person_patch(sample_video: str | Path, model_path: str | None = None) -> tuple[np.ndarray, float]:
    """``(patch_bgr, foot_row)``: the man standing still on the box (frame 80),
    280 x 460 px with a margin around him, and the patch row of his lowest foot
    landmark. The array is read-only."""
    measured = measure_patch(sample_video, model_path)
    return measured.image, measured.foot_row


def canvas_colour(patch: np.ndarray) -> tuple[int, int, int]:
    """Median BGR colour of the patch border: the canvas fill."""
    border = np.concatenate([patch[0], patch[-1], patch[:, 0], patch[:, -1]])
    return tuple(int(c) for c in np.median(border, axis=0))


def _paste(background: np.ndarray, patch: np.ndarray, top: int, left: int) -> np.ndarray:
    frame = background.copy()
    h, w = patch.shape[:2]
    if top < 0 or left < 0 or top + h > frame.shape[0] or left + w > frame.shape[1]:
        raise ValueError(f"patch at ({left}, {top}) leaves the {frame.shape[1]}x{frame.shape[0]} canvas")
    frame[top : top + h, left : left + w] = patch
    return frame


def write_video(path: str | Path, frames: Iterable[np.ndarray], fps: float, size: tuple[int, int]) -> Path:
    """Encode BGR frames of ``size = (width, height)`` as H.264 (``-crf 10``, ``yuv420p``)."""
    import imageio_ffmpeg

    width, height = size
    if width % 2 or height % 2:
        raise ValueError(f"yuv420p needs even dimensions, got {width}x{height}")
    path = Path(path)
    command = [
        imageio_ffmpeg.get_ffmpeg_exe(),
        "-y",
        "-loglevel",
        "error",
        "-f",
        "rawvideo",
        "-pix_fmt",
        "bgr24",
        "-s",
        f"{width}x{height}",
        "-r",
        f"{fps}",
        "-i",
        "-",
        "-an",
        "-c:v",
        "libx264",
        "-preset",
        "veryfast",
        "-crf",
        "10",
        "-pix_fmt",
        "yuv420p",
        str(path),
    ]
    process = subprocess.Popen(command, stdin=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        for frame in frames:
            if frame.shape != (height, width, 3) or frame.dtype != np.uint8:
                raise ValueError(f"frame {frame.shape} {frame.dtype}, expected ({height}, {width}, 3) uint8")
            process.stdin.write(np.ascontiguousarray(frame).tobytes())
    finally:
        process.stdin.close()
        stderr = process.stderr.read()
        process.stderr.close()
        returncode = process.wait()
    if returncode != 0:
        raise RuntimeError(f"ffmpeg failed ({returncode}): {stderr.decode(errors='replace').strip()}")
    return path


def _frames_of(seconds: float, fps: float, what: str) -> int:
    """``seconds * fps`` as a whole number of frames, or ValueError."""
    frames = seconds * fps
    if abs(frames - round(frames)) > 1e-6 or round(frames) < 1:
        raise ValueError(f"{what} {seconds} s is not a whole number of frames at {fps} fps")
    return round(frames)


def make_jump_clip(
    path: str | Path,
    sample_video: str | Path,
    fps: float = 30.0,
    flight_times_s: tuple[float, ...] = (0.5, 0.4),
    rest_s: float = 1.0,
    g: float = G,
    size: tuple[int, int] = CANVAS_SIZE,
    model_path: str | None = None,
) -> JumpTruth:
    """Write a clip of the man jumping straight up and return its truth.

    Layout: rest ``rest_s``, then for each flight time ``T`` a parabola
    ``h(t) = v0 (t - t0) - g/2 (t - t0)^2`` with ``v0 = g T / 2`` (height
    ``g T^2 / 8``) followed by rest ``rest_s``. Every ``T`` and ``rest_s`` must
    be a whole number of frames so takeoff and landing fall on frame times.
    The patch is centred horizontally; its lowest foot landmark rests at 3/4 of
    the canvas height.
    """
    measured = measure_patch(sample_video, model_path)
    patch, foot_row, px_per_m = measured.image, measured.foot_row, measured.px_per_m
    width, height = size
    rest = _frames_of(rest_s, fps, "rest")
    flights = [_frames_of(t, fps, "flight time") for t in flight_times_s]

    heights = [0.0] * rest
    jumps = []
    for flight_frames in flights:
        takeoff = len(heights)
        flight_time = flight_frames / fps
        v0 = g * flight_time / 2
        for k in range(flight_frames):
            t = k / fps
            heights.append(max(0.0, v0 * t - g / 2 * t * t))
        landing = len(heights)
        heights.extend([0.0] * rest)
        jumps.append(Jump(takeoff, landing, flight_time, g * flight_time**2 / 8, v0))
    offsets = [round(h * px_per_m) for h in heights]

    rest_top = round(0.75 * height - foot_row)
    left = (width - patch.shape[1]) // 2
    background = np.empty((height, width, 3), np.uint8)
    background[:] = canvas_colour(patch)
    write_video(path, (_paste(background, patch, rest_top - o, left) for o in offsets), fps, size)
    return JumpTruth(
        fps=float(fps),
        frame_count=len(heights),
        width=width,
        height=height,
        px_per_m=px_per_m,
        body_height_px=measured.body_height_px,
        ground_row=rest_top + foot_row,
        rest_top=rest_top,
        left=left,
        g=g,
        jumps=tuple(jumps),
        height_m=tuple(heights),
        offset_px=tuple(offsets),
    )


def make_repetition_clip(
    path: str | Path,
    sample_video: str | Path,
    n: int = 5,
    fps: float = 30.0,
    period_s: float = 1.0,
    amplitude_frac: float = 0.5,
    rest_s: float = 1.0,
    size: tuple[int, int] = CANVAS_SIZE,
    model_path: str | None = None,
) -> RepetitionTruth:
    """Write a clip of the man shuffling sideways ``n`` times and return its truth.

    Layout: rest ``rest_s``, then ``n`` cycles ``x(t) = A (1 - cos(2 pi (t - t0) / P))
    / 2`` to the right with ``A = amplitude_frac * body height``, each starting
    and ending at the rest position, then rest ``rest_s``. The feet stay at the
    same row throughout. ``period_s`` must be an even number of frames so each
    peak falls on a frame.
    """
    if n < 1:
        raise ValueError(f"n must be at least 1, got {n}")
    measured = measure_patch(sample_video, model_path)
    patch, foot_row = measured.image, measured.foot_row
    width, height = size
    rest = _frames_of(rest_s, fps, "rest")
    period = _frames_of(period_s, fps, "period")
    if period % 2:
        raise ValueError(f"period {period_s} s is an odd number of frames at {fps} fps")
    amplitude = amplitude_frac * measured.body_height_px

    exact = [0.0] * rest
    starts = []
    for _ in range(n):
        starts.append(len(exact))
        exact.extend(amplitude * (1 - math.cos(2 * math.pi * k / period)) / 2 for k in range(period))
    exact.extend([0.0] * (rest + 1))
    offsets = [round(x) for x in exact]

    rest_left = round((width - patch.shape[1] - amplitude) / 2)
    top = round(0.75 * height - foot_row)
    background = np.empty((height, width, 3), np.uint8)
    background[:] = canvas_colour(patch)
    write_video(path, (_paste(background, patch, top, rest_left + o) for o in offsets), fps, size)
    return RepetitionTruth(
        fps=float(fps),
        frame_count=len(exact),
        width=width,
        height=height,
        n=n,
        period_s=period / fps,
        period_frames=period,
        amplitude_px=amplitude,
        px_per_m=measured.px_per_m,
        body_height_px=measured.body_height_px,
        ground_row=top + foot_row,
        top=top,
        rest_left=rest_left,
        cycle_start_frames=tuple(starts),
        peak_frames=tuple(s + period // 2 for s in starts),
        offset_exact_px=tuple(exact),
        offset_px=tuple(offsets),
    )
