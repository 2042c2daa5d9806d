"""Decode a frame range of a video file (PyAV: FFmpeg's decoder, one thread).

PyAV converts each wanted frame from the decoder's YUV straight to the pixel
layout the caller needs (``rgb24`` for the pose model, ``bgr24`` for OpenCV
drawing) in one pass; the pixels are identical to OpenCV's ``read`` followed
by ``cvtColor``. Decoding runs on one thread: a Dask worker is one core's worth
of work, and decoder threads would compete with the other workers and with
MediaPipe's own threads.
"""

from __future__ import annotations

from collections.abc import Iterator
from fractions import Fraction

import numpy as np

from pipeline.errors import VideoError


def iter_frames(
    path: str,
    start: int,
    end: int | None,
    want=lambda index: True,
    times_ms: list[float] | None = None,
    pixel_format: str = "bgr24",
) -> Iterator[tuple[int, np.ndarray | None]]:
    """Yield ``(index, frame)`` for frames ``start <= index < end`` (to the end
    of the stream when ``end`` is None), ``frame`` an ``H x W x 3`` uint8 array
    in ``pixel_format`` (``bgr24`` or ``rgb24``), rotated as a player shows it.

    Frames for which ``want(index)`` is false are decoded but not converted
    (``frame`` is None). Seeking lands on the exact frame: the demuxer seeks to
    the key frame before ``start`` and the frames before ``start`` are decoded
    and dropped; a seek that lands after ``start`` is an error. Frame numbers
    count decoded frames from the first one (a frame's number after a seek is
    its presentation time x fps). With ``times_ms`` given, each frame's
    presentation time in ms from the first frame is appended to it.
    """
    import av

    try:
        container = av.open(str(path))
    except (av.FFmpegError, OSError) as exc:
        raise VideoError(path, f"not a readable video ({_first_line(exc)})") from exc
    try:
        stream = container.streams.video[0]
        stream.thread_count = 1
        base = stream.time_base or Fraction(1, 1000)
        origin = stream.start_time or 0
        fps = stream.average_rate or stream.guessed_rate or Fraction(30)
        index = None if start > 0 else 0
        if start > 0:
            target = origin + int(start / fps / base)
            container.seek(target, stream=stream, backward=True, any_frame=False)
        decoded = _decode(container, stream, path)
        for frame in decoded:
            pts = frame.pts if frame.pts is not None else origin
            if index is None:  # first frame after a seek: its number from its time
                index = int(round(float((pts - origin) * base * fps)))
                if index > start:
                    raise VideoError(path, f"seek to frame {start} landed on frame {index}")
            if index >= start:
                if end is not None and index >= end:
                    return
                if times_ms is not None:
                    times_ms.append(float((pts - origin) * base * 1000))
                yield index, (_pixels(frame, pixel_format) if want(index) else None)
            index += 1
    finally:
        container.close()


def _decode(container, stream, path) -> Iterator:
    import av

    frames = container.decode(stream)
    while True:
        try:
            frame = next(frames)
        except StopIteration:
            return
        except av.FFmpegError as exc:
            raise VideoError(path, f"a frame could not be decoded ({_first_line(exc)})") from exc
        yield frame


def _pixels(frame, pixel_format: str) -> np.ndarray:
    """The frame as one contiguous array (FFmpeg pads its rows; MediaPipe reads the buffer as packed)."""
    pixels = frame.to_ndarray(format=pixel_format)
    turns = (frame.rotation or 0) // 90 % 4
    return np.ascontiguousarray(np.rot90(pixels, turns) if turns else pixels)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__
