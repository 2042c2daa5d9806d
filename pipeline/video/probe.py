"""Probe a video file: frame count, fps, size, rotation, codec.

A video is a local path or a URL (``s3://``, ``gs://``, ``az://``, ``https://``):
a remote one is read through a seekable file object (``pipeline.storage.readable``),
so FFmpeg fetches the byte ranges it reads and nothing is downloaded whole."""

from __future__ import annotations

import functools
import os
from dataclasses import asdict, dataclass
from pathlib import Path

import cv2
import numpy as np

from pipeline import storage
from pipeline.errors import VideoError, redact

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
    if storage.is_local(path):
        file = Path(path)
        if not file.exists():
            raise VideoError(file, "no such file")
        if not file.is_file():
            raise VideoError(file, "not a file")
        if not os.access(file, os.R_OK):
            raise VideoError(file, "permission denied (not readable)")
        size = file.stat().st_size
    else:
        file = os.fspath(path)
        size = _remote_size(file)
    if size == 0:
        raise VideoError(file, "empty file (0 bytes)")
    codec = _check_streams(file)
    if storage.is_local(file):
        fps, frame_count, rotation, opencv_codec, ok, frame = _capture_values(file)
    else:
        fps, frame_count, rotation, opencv_codec, ok, frame = _stream_values(file)
    codec = codec or opencv_codec
    if codec in TEXT_ART_CODECS or opencv_codec in TEXT_ART_CODECS:
        raise VideoError(file, f"not a readable video (a text file, which FFmpeg would render as '{codec}' art)")
    if not ok or frame is None:
        raise VideoError(file, "no decodable video frame (not a video, audio only, or corrupt)")
    if fps <= 0 or fps > 1000:
        raise VideoError(file, f"the container reports an unusable frame rate ({fps})")
    if frame_count <= 0:
        raise VideoError(file, "the container reports no frame count")
    height, width = frame.shape[:2]
    table = frame_table(file)
    if not table.pts:
        raise VideoError(
            file, "its frames carry no timestamps (a raw stream): remux it first (ffmpeg -i IN -c copy OUT.mp4)"
        )
    if table.listed > 0 and len(table) < table.listed - 1:
        raise VideoError(
            file, f"truncated or corrupt: the container lists {table.listed} frames but holds data for {len(table)}"
        )
    return VideoInfo(
        path=redact(str(file)),  # a signed URL's query string stays out of the outputs
        frame_count=len(table),
        fps=fps,
        width=int(width),
        height=int(height),
        rotation_deg=rotation,
        codec=codec,
        size_bytes=size,
        variable_frame_rate=is_variable_rate(table.times_s(), fps),
    )


def _capture_values(path) -> tuple[float, int, int, str, bool, object]:
    """What OpenCV reads of a local video: fps, frame count, rotation, codec, and its first frame."""
    cap = open_capture(path)
    try:
        fps = float(cap.get(cv2.CAP_PROP_FPS) or 0.0)
        frame_count = int(cap.get(cv2.CAP_PROP_FRAME_COUNT) or 0)
        rotation = int(cap.get(cv2.CAP_PROP_ORIENTATION_META) or 0) % 360
        codec = _fourcc_to_str(cap.get(cv2.CAP_PROP_FOURCC))
        ok, frame = cap.read()
    finally:
        cap.release()
    return fps, frame_count, rotation, codec, ok, frame


def _stream_values(location: str) -> tuple[float, int, int, str, bool, object]:
    """The values of :func:`_capture_values` read with PyAV through a file object (OpenCV
    opens paths only): the stream's average frame rate (OpenCV's too), the codec, the display
    matrix's clockwise rotation, and the first frame turned as a player shows it (tests compare
    both on the test videos)."""
    import av

    try:
        with storage.readable(location) as source:
            try:
                container = av.open(source)
            except av.FFmpegError as exc:
                raise VideoError(location, "not a readable video (the decoder could not open it)") from exc
            with container:
                stream = container.streams.video[0]
                fps = float(stream.average_rate or stream.guessed_rate or 0.0)  # as OpenCV's CAP_PROP_FPS
                frame_count = int(stream.frames or 0)
                codec = _codec_label(stream)
                first = next(container.decode(stream), None)
    except (av.FFmpegError, IndexError):
        return 0.0, 0, 0, "unknown", False, None
    if first is None:
        return fps, frame_count, 0, codec, False, None
    rotation = int(round(-(first.rotation or 0) / 90.0)) % 4 * 90
    size = (first.height, first.width) if rotation in (0, 180) else (first.width, first.height)
    return fps, frame_count, rotation, codec, True, np.empty((*size, 0), np.uint8)


def _remote_size(location: str) -> int:
    """The size of a remote video; VideoError when it is missing, unreadable or a folder."""
    try:
        info = storage.info_of(location)
    except FileNotFoundError as exc:
        raise VideoError(location, "no such file") from exc
    except PermissionError as exc:
        raise VideoError(location, "permission denied (not readable)") from exc
    except OSError as exc:
        raise VideoError(location, f"cannot be read ({exc.strerror or type(exc).__name__})") from exc
    if info.get("type") == "directory":
        raise VideoError(location, "not a file")
    return int(info.get("size") or 0)


def _check_streams(path) -> str | None:
    """The video stream's codec as FFmpeg names it: the container's tag (``avc1``, ``vp09``,
    ``hvc1``: what ffprobe shows as codec_tag_string), else the codec's name. None for a file
    FFmpeg does not recognise as a container (OpenCV's open then says so). A container that
    opens but has no video stream gets its own reason."""
    import av

    try:
        with storage.readable(path) as source, av.open(source) as container:
            if container.streams.video:
                return _codec_label(container.streams.video[0])
            audio = bool(container.streams.audio)
    except av.FFmpegError:
        return None
    raise VideoError(path, "no video stream (an audio-only file)" if audio else "no video stream")


def _codec_label(stream) -> str:
    tag = str(stream.codec_context.codec_tag or "").strip("\x00 ").lower()
    return tag if tag.isprintable() and tag else str(stream.codec_context.name or "unknown").lower()


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
        with storage.readable(path) as source, av.open(source) as container:
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


@functools.lru_cache(maxsize=16)
def _cached_table(path: str, version: tuple, stored: str | None) -> FrameTable:
    if stored is not None:
        try:
            return load_frame_table(stored)
        except FileNotFoundError:
            pass  # (a work folder emptied meanwhile) read it from the video
    return read_frame_table(path)


def frame_table(path: str | os.PathLike, stored: str | None = None) -> FrameTable:
    """``path``'s frame table, read once per process for each version of the file (a local
    file's size and mtime, an object's size and ETag). ``stored``: where the run saved the
    table (:func:`save_frame_table`), read instead of demuxing the whole video: a worker
    decoding a range of a video on object storage then fetches only that range."""
    return _cached_table(os.fspath(path), storage.version(path), stored)


def save_frame_table(table: FrameTable, location: str) -> str:
    """Write ``table`` to ``location`` (a ``.npz``), atomically."""
    pts = np.asarray(table.pts, dtype=np.int64)
    meta = np.asarray([table.start_pts, table.listed], dtype=np.int64)
    return storage.atomic_write(
        location, lambda fh: np.savez(fh, pts=pts, meta=meta, time_base=np.float64(table.time_base))
    )


def load_frame_table(location: str) -> FrameTable:
    with storage.open_file(location) as fh, np.load(fh) as data:
        start, listed = (int(v) for v in data["meta"])
        return FrameTable(tuple(int(v) for v in data["pts"]), float(data["time_base"]), start, listed)
