"""Probe a video file: frame count, fps, size, rotation, codec."""

from __future__ import annotations

import functools
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
    variable_frame_rate: bool = False  # frame times are not a constant 1/fps apart

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
    _check_streams(file)
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
    table = read_frame_table(file)
    if not table.pts:
        raise VideoError(
            file, "its frames carry no timestamps (a raw stream): remux it first (ffmpeg -i IN -c copy OUT.mp4)"
        )
    if table.listed > 0 and len(table) < table.listed - 1:
        raise VideoError(
            file, f"truncated or corrupt: the container lists {table.listed} frames but holds data for {len(table)}"
        )
    return VideoInfo(
        path=str(file),
        frame_count=len(table),
        fps=fps,
        width=int(width),
        height=int(height),
        rotation_deg=rotation,
        codec=codec,
        size_bytes=size,
        variable_frame_rate=is_variable_rate(table.times_s(), fps),
    )


def _check_streams(path: Path) -> None:
    """A container that opens but has no video stream gets its own reason."""
    import av

    try:
        with av.open(str(path)) as container:
            if container.streams.video:
                return
            audio = bool(container.streams.audio)
    except av.FFmpegError:
        return  # not a container FFmpeg recognises: OpenCV's open says so
    raise VideoError(path, "no video stream (an audio-only file)" if audio else "no video stream")


@dataclass(frozen=True)
class FrameTable:
    """The frames of a video's first video stream as its container lists them:
    ``pts[i]`` is the presentation timestamp of frame ``i`` (presentation order,
    in ``time_base`` units). This numbering is what every reader, chunk plan and
    output means by "frame ``i``"; a frame keeps its number even when its data
    cannot be decoded."""

    pts: tuple[int, ...]
    time_base: float  # seconds per pts unit
    start_pts: int  # the stream's start time, in pts units (frame times count from it)
    listed: int = 0  # frames the container's header lists (0 when it does not say)

    def __len__(self) -> int:
        return len(self.pts)

    @functools.cached_property
    def index_of(self) -> dict[int, int]:
        """Frame number by presentation timestamp."""
        return {pts: i for i, pts in enumerate(self.pts)}

    def times_s(self) -> list[float]:
        return [(p - self.start_pts) * self.time_base for p in self.pts]


def read_frame_table(path: str | os.PathLike) -> FrameTable:
    """The frame table of ``path`` from its packets, without decoding them
    (about 0.1 s for 27,000 frames). A packet without a timestamp or without
    data is not a frame."""
    import av

    try:
        with av.open(str(path)) as container:
            stream = container.streams.video[0]
            pts = sorted(
                int(packet.pts) for packet in container.demux(stream) if packet.pts is not None and packet.size > 0
            )
            base = float(stream.time_base) if stream.time_base else 0.0
            start = int(stream.start_time) if stream.start_time is not None else (pts[0] if pts else 0)
            listed = int(stream.frames or 0)
    except (av.FFmpegError, IndexError) as exc:
        raise VideoError(
            path, f"not a readable video ({str(exc).splitlines()[0] if str(exc) else 'demuxer error'})"
        ) from exc
    return FrameTable(tuple(pts), base, start, listed)


def is_variable_rate(times: list[float], fps: float, tolerance: float = 0.25) -> bool:
    """Whether consecutive frame times differ from ``1 / fps`` by more than ``tolerance`` of it."""
    if len(times) < 3:
        return False
    period = 1.0 / fps
    return any(abs((b - a) - period) > tolerance * period for a, b in zip(times, times[1:]))
