"""Decode a frame range of a video file, by the container's frame table.

Frame ``i`` is the ``i``-th entry of the video's :class:`FrameTable` (the
presentation timestamps of its packets). The reader seeks to the key frame
before the first wanted frame and decodes forward, naming every decoded frame
by its timestamp, so it lands on exact frames whatever the frame rate does,
and decodes past damaged data the way players do: a packet the decoder
rejects costs the frames it held, and those are reported by number, never
skipped silently and never taken for the end of the stream.
"""

from __future__ import annotations

import functools
import logging
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np

from pipeline import storage
from pipeline.errors import VideoError
from pipeline.video.probe import frame_table

logger = logging.getLogger(__name__)


def _rotation(frame) -> int:
    """Clockwise degrees a player turns ``frame`` by (its display matrix), one of 0, 90, 180, 270."""
    # PyAV reports the display matrix's angle counter-clockwise.
    return int(round(-(frame.rotation or 0) / 90.0)) % 4 * 90


def _picture(frame, pixel_format: str) -> np.ndarray:
    """The frame as a player shows it: ``pixel_format`` pixels, the rotation applied, C-contiguous."""
    if pixel_format == "i420":
        return _planes(frame)
    image = frame.to_ndarray(format=pixel_format)  # rows may be padded for alignment
    turn = _rotation(frame)
    if turn:
        image = np.rot90(image, k=-turn // 90)
    return np.ascontiguousarray(image)


# 8-bit 4:2:0 formats whose planes are taken as they are (no conversion).
PLANAR_420 = ("yuv420p", "yuvj420p")


def _planes(frame) -> np.ndarray:
    """The frame's 8-bit 4:2:0 planes in I420 layout (``height * 3 / 2`` rows), rotation applied.
    A frame of another pixel format is converted to ``yuv420p`` first."""
    own = frame.format.name in PLANAR_420
    image = frame.to_ndarray() if own else frame.to_ndarray(format="yuv420p")
    turn = _rotation(frame)
    if not turn:
        return image
    height, width = frame.height, frame.width
    turned = [np.rot90(plane, k=-turn // 90).reshape(-1) for plane in i420_planes(image)]
    return np.concatenate(turned).reshape(height * 3 // 2 if turn == 180 else width * 3 // 2, -1)


def i420_planes(frame: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Views of the Y, U and V planes of an I420 array (``height * 3 / 2`` rows of ``width``, even sizes)."""
    height, width = frame.shape[0] * 2 // 3, frame.shape[1]
    flat = frame.reshape(-1)
    quarter = height * width // 4
    u = flat[height * width : height * width + quarter].reshape(height // 2, width // 2)
    v = flat[height * width + quarter :].reshape(height // 2, width // 2)
    return frame[:height], u, v


@dataclass(frozen=True)
class PictureFormat:
    """How a video's pictures are stored: what a writer needs to draw on them and encode
    them without converting them (``pipeline.outputs.annotate.YuvCanvas``)."""

    pixel_format: str  # of the decoded frames, e.g. yuv420p, yuvj420p, yuv422p10le
    matrix: str  # YCbCr matrix: bt601, bt709 or bt2020
    full_range: bool  # JPEG (0-255) rather than video (16-235) levels
    colorspace: str | None  # the stream's colour tags, FFmpeg's names (None: unspecified)
    primaries: str | None
    transfer: str | None

    @property
    def planar_420(self) -> bool:
        return self.pixel_format in PLANAR_420

    @property
    def i420_format(self) -> str:
        """The raw format the I420 arrays of ``iter_frames(..., "i420")`` are in."""
        return self.pixel_format if self.planar_420 else "yuv420p"


# FFmpeg's AVColorSpace / AVColorPrimaries / AVColorTransferCharacteristic numbers a writer can pass on by name.
_COLORSPACES = {1: "bt709", 5: "bt470bg", 6: "smpte170m", 9: "bt2020nc"}
_PRIMARIES = {1: "bt709", 5: "bt470bg", 6: "smpte170m", 9: "bt2020"}
_TRANSFERS = {1: "bt709", 6: "smpte170m", 13: "iec61966-2-1", 16: "smpte2084", 18: "arib-std-b67"}


@functools.lru_cache(maxsize=16)
def _cached_format(path: str, version: tuple) -> PictureFormat:
    import av

    try:
        with storage.readable(path) as source, av.open(source) as container:
            frame = next(container.decode(video=0))
    except (av.FFmpegError, StopIteration) as exc:
        raise VideoError(path, "no decodable video frame") from exc
    colorspace = _COLORSPACES.get(int(frame.colorspace or 0))
    matrix = {"bt709": "bt709", "bt2020nc": "bt2020"}.get(colorspace or "", "bt601")
    full = frame.format.name == "yuvj420p" or int(frame.color_range or 0) == 2
    return PictureFormat(
        pixel_format=frame.format.name,
        matrix=matrix,
        full_range=full,
        colorspace=colorspace,
        primaries=_PRIMARIES.get(int(frame.color_primaries or 0)),
        transfer=_TRANSFERS.get(int(frame.color_trc or 0)),
    )


def picture_format(path: str | os.PathLike) -> PictureFormat:
    """``path``'s picture format, from its first frame (once per process for each version of the file)."""
    return _cached_format(os.fspath(path), storage.version(path))


def iter_frames(
    path: str,
    start: int,
    end: int | None,
    want: Callable[[int], bool] = lambda index: True,
    times_ms: list[float] | None = None,
    pixel_format: str = "bgr24",
    missing: list[int] | None = None,
    table_at: str | None = None,
) -> Iterator[tuple[int, np.ndarray | None]]:
    """Yield ``(index, frame)`` for every frame ``start <= index < end`` (to the
    last frame of the table when ``end`` is None), in order, ``frame`` in
    ``pixel_format`` (``bgr24``, OpenCV's layout, or ``rgb24``, the pose model's)
    with the rotation metadata applied.

    ``i420``, the frame's own 8-bit 4:2:0 planes as one ``(height * 3 / 2, width)``
    array (even sizes only; see :func:`picture_format`).

    ``frame`` is None for a frame that ``want(index)`` declines (it is decoded
    but not converted, which is cheaper) and for a frame whose data could not be
    decoded. Undecodable frames are appended to ``missing``; when ``missing`` is
    None, the first one raises VideoError instead. With ``times_ms`` given, each
    frame's presentation time (from the stream's start) is appended to it.
    ``table_at``: where the run stored the video's frame table (``probe.frame_table``).
    """
    if pixel_format not in ("bgr24", "rgb24", "i420"):
        raise ValueError(f"pixel_format: expected bgr24, rgb24 or i420, got {pixel_format!r}")
    table = frame_table(path, table_at)
    stop = len(table) if end is None else min(end, len(table))
    if start >= stop:
        return
    to_ms = table.time_base * 1000.0
    expected = start  # the next frame number to yield

    def gap(until: int) -> Iterator[tuple[int, None]]:
        nonlocal expected
        if until > expected:
            lost = list(range(expected, until))
            if missing is None:
                raise VideoError(path, f"frame {lost[0]} could not be decoded")
            logger.warning("%s: frames %d-%d could not be decoded", path, lost[0], lost[-1])
            missing.extend(lost)
        for index in range(expected, until):
            if times_ms is not None:
                times_ms.append((table.pts[index] - table.start_pts) * to_ms)
            yield index, None
        expected = max(expected, until)

    for frame in _decoded(path, table.pts[start], start > 0):
        index = table.index_of.get(frame.pts)
        if index is None or index < expected:
            continue  # before the range (decoded from the key frame on), or a duplicate
        if index >= stop:
            break
        yield from gap(index)
        if times_ms is not None:
            times_ms.append((table.pts[index] - table.start_pts) * to_ms)
        yield index, (_picture(frame, pixel_format) if want(index) else None)
        expected = index + 1
        if expected >= stop:
            return
    yield from gap(stop)


def _decoded(path: str, first_pts: int, seek: bool):
    """Frames of the video stream from the key frame at or before ``first_pts``
    on, packets the decoder rejects skipped (their frames never come out)."""
    import av

    with storage.readable(path) as source:
        try:
            container = av.open(source)
        except av.FFmpegError as exc:
            raise VideoError(path, f"not a readable video ({_first_line(exc)})") from exc
        with container:
            yield from _frames_of(container, path, first_pts, seek)


def _frames_of(container, path: str, first_pts: int, seek: bool):
    """The frames of an open container from the key frame at or before ``first_pts`` on."""
    import av

    stream = container.streams.video[0]
    # Slice threads, FFmpeg's default: frame threads are faster but, on damaged data, lose whole
    # frames that a single-frame decoder conceals, and lose different ones depending on where it starts.
    stream.thread_type = "SLICE"
    if seek:
        container.seek(first_pts, stream=stream, backward=True, any_frame=False)
    landed = rejected = False
    for packet in container.demux(stream):
        try:
            frames = packet.decode()
        except av.error.InvalidDataError as exc:
            logger.debug("%s: packet at pts %s rejected by the decoder: %s", path, packet.pts, exc)
            rejected = True
            continue
        for frame in frames:
            if seek and not landed and not rejected and frame.pts is not None and frame.pts > first_pts:
                # A demuxer that cannot seek backwards to a key frame: the frames before would be lost.
                raise VideoError(path, f"seeking to timestamp {first_pts} landed after it ({frame.pts})")
            landed = True
            yield frame


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
