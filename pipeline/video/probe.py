"""Probe a video file: frame count, fps, size, rotation, codec."""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass
from pathlib import Path

import cv2

from pipeline.errors import VideoError

VIDEO_EXTENSIONS = frozenset(
    {".mp4", ".m4v", ".mov", ".avi", ".mkv", ".webm", ".mpg", ".mpeg", ".wmv", ".flv", ".3gp", ".ts"}
)

# FFmpeg's tty demuxer renders any text file as "video" in these codecs.
TEXT_ART_CODECS = frozenset({"ansi", "bintext", "xbin", "idf"})


@dataclass(frozen=True)
class VideoInfo:
    """What the container and the decoder say about a video.

    ``width`` and ``height`` are the size of the frames as decoded, with the
    rotation metadata already applied (what a player shows).
    """

    path: str
    frame_count: int
    fps: float
    width: int
    height: int
    rotation_deg: int
    codec: str
    size_bytes: int

    @property
    def duration_s(self) -> float:
        return self.frame_count / self.fps

    def to_dict(self) -> dict:
        data = asdict(self)
        data["duration_s"] = round(self.duration_s, 6)
        return data


def _fourcc_to_str(value: float) -> str:
    code = int(value)
    chars = [chr((code >> (8 * i)) & 0xFF) for i in range(4)]
    text = "".join(chars).strip("\x00 ").lower()
    return text if text.isprintable() and text else "unknown"


def open_capture(path: str | os.PathLike) -> cv2.VideoCapture:
    """Open a file with OpenCV's FFmpeg backend, rotation applied as a player would."""
    cap = cv2.VideoCapture(str(path), cv2.CAP_FFMPEG)
    if not cap.isOpened():
        cap.release()
        raise VideoError(path, "not a readable video (the decoder could not open it)")
    cap.set(cv2.CAP_PROP_ORIENTATION_AUTO, 1)
    return cap


def probe_video(path: str | os.PathLike) -> VideoInfo:
    """Read the metadata of ``path`` and decode its first frame.

    Raises VideoError with a one-line reason when the file is missing, empty,
    not a video, or has no decodable frame.
    """
    file = Path(path)
    if not file.exists():
        raise VideoError(file, "no such file")
    if not file.is_file():
        raise VideoError(file, "not a file")
    if not os.access(file, os.R_OK):
        raise VideoError(file, "permission denied (not readable)")
    size = file.stat().st_size
    if size == 0:
        raise VideoError(file, "empty file (0 bytes)")
    cap = open_capture(file)
    try:
        fps = float(cap.get(cv2.CAP_PROP_FPS) or 0.0)
        frame_count = int(cap.get(cv2.CAP_PROP_FRAME_COUNT) or 0)
        rotation = int(cap.get(cv2.CAP_PROP_ORIENTATION_META) or 0) % 360
        codec = _fourcc_to_str(cap.get(cv2.CAP_PROP_FOURCC))
        ok, frame = cap.read()
    finally:
        cap.release()
    if codec in TEXT_ART_CODECS:
        raise VideoError(file, f"not a readable video (a text file, which FFmpeg would render as '{codec}' art)")
    if not ok or frame is None:
        raise VideoError(file, "no decodable video frame (not a video, audio only, or corrupt)")
    if fps <= 0 or fps > 1000:
        raise VideoError(file, f"the container reports an unusable frame rate ({fps})")
    if frame_count <= 0:
        raise VideoError(file, "the container reports no frame count")
    height, width = frame.shape[:2]
    return VideoInfo(
        path=str(file),
        frame_count=frame_count,
        fps=fps,
        width=int(width),
        height=int(height),
        rotation_deg=rotation,
        codec=codec,
        size_bytes=size,
    )
