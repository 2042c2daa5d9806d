"""Decode a frame range of a video file."""

from __future__ import annotations

from collections.abc import Iterator

import cv2
import numpy as np

from pipeline.errors import VideoError
from pipeline.video.probe import open_capture


def iter_frames(
    path: str,
    start: int,
    end: int | None,
    want=lambda index: True,
    times_ms: list[float] | None = None,
    pixel_format: str = "bgr24",
) -> Iterator[tuple[int, np.ndarray | None]]:
    """Yield ``(index, frame)`` for frames ``start <= index < end`` (to the end
    of the stream when ``end`` is None), ``frame`` in ``pixel_format``
    (``bgr24``, OpenCV's layout, or ``rgb24``, the pose model's, converted in place).

    Frames for which ``want(index)`` is false are skipped without being
    converted (``frame`` is None), which is cheaper than decoding them fully.
    Seeking lands on the exact frame: OpenCV seeks to the preceding key frame
    and decodes forward; the position is checked after the seek. (OpenCV
    numbers frames by time x fps, so a variable-frame-rate video must be read
    from its start.) With ``times_ms`` given, each frame's presentation time
    from the container is appended to it.
    """
    if pixel_format not in ("bgr24", "rgb24"):
        raise ValueError(f"pixel_format: expected bgr24 or rgb24, got {pixel_format!r}")
    rgb = pixel_format == "rgb24"
    cap = open_capture(path)
    try:
        if start > 0:
            cap.set(cv2.CAP_PROP_POS_FRAMES, start)
            position = int(cap.get(cv2.CAP_PROP_POS_FRAMES))
            if position != start:
                raise VideoError(path, f"seek to frame {start} landed on frame {position}")
        index = start
        while end is None or index < end:
            if not cap.grab():
                return
            if times_ms is not None:
                times_ms.append(float(cap.get(cv2.CAP_PROP_POS_MSEC)))
            if want(index):
                ok, frame = cap.retrieve()
                if not ok or frame is None:
                    raise VideoError(path, f"frame {index} could not be decoded")
                if rgb:
                    cv2.cvtColor(frame, cv2.COLOR_BGR2RGB, dst=frame)
                yield index, frame
            else:
                yield index, None
            index += 1
    finally:
        cap.release()
