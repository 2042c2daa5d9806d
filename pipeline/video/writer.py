"""Encode BGR frames into H.264 MP4 segments with ffmpeg and join them without re-encoding.

Segments are MP4 files (libx264, yuv420p, constant frame period, one output
frame per input frame). The concat demuxer places each segment after the
previous one using the segment's duration, so stream copying them gives every
frame exactly once at the original rate. Segments are encoded without
B-frames: with B-frames the decoding delay of a segment depends on its length
(a one-frame segment has none), and joining segments with different delays
produces non-monotonic decoding timestamps, which the muxer "repairs" into a
wrong duration and frame rate. Without B-frames decoding and presentation
timestamps coincide and the join is exact; the price is a somewhat larger file
at the same quality. MPEG-TS segments have the same timestamp problem plus a
start offset, and raw Annex B streams carry no timestamps at all.

H.264 in 4:2:0 crops the coded picture in steps of two pixels (the SPS crop
unit), so a frame with an odd width or height cannot be stored at its exact
size. Such frames are padded by one column and/or row on the right/bottom,
filled with a copy of the last column/row; pixel coordinates of the original
frame are unchanged and ``SegmentWriter.coded_size`` gives the stored size.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import re
import secrets
import subprocess
import tempfile
from fractions import Fraction
from pathlib import Path
from types import TracebackType

import numpy as np

from pipeline.errors import OutputError

logger = logging.getLogger(__name__)

NTSC_TOLERANCE = 1e-5
_GENERIC = ("Task finished with error code", "Terminating thread with return code")
_COMPONENT = re.compile(r"^\[[^\]]* @ 0x[0-9a-fA-F]+\] ")
_QUIET = ("-hide_banner", "-nostdin", "-loglevel", "error", "-nostats", "-y")


def ffmpeg_exe() -> str:
    """Path of the ffmpeg binary bundled with imageio-ffmpeg."""
    try:
        import imageio_ffmpeg

        return imageio_ffmpeg.get_ffmpeg_exe()
    except (ImportError, RuntimeError) as exc:
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise OutputError(f"ffmpeg is not available (install imageio-ffmpeg): {reason}") from exc


def fps_fraction(fps: float) -> Fraction:
    """``fps`` as an exact rational: NTSC rates (29.97, 23.976, 59.94) become n*1000/1001."""
    if not math.isfinite(fps) or fps <= 0:
        raise ValueError(f"fps must be a positive number, got {fps!r}")
    ntsc = Fraction(round(fps * 1.001) * 1000, 1001)
    if ntsc > 0 and abs(float(ntsc) - fps) <= NTSC_TOLERANCE * fps:
        return ntsc
    return Fraction(fps).limit_denominator(1001)


def track_timescale(rate: Fraction) -> int:
    """MP4 ticks per second in which one frame period (1/rate) is a whole number of ticks."""
    scale = rate.numerator
    while scale < 10000:
        scale *= 2
    return scale


def _last_line(text: str, prefer: str = "") -> str:
    """The most telling line of ffmpeg's stderr: the last one containing ``prefer``, else the last one
    that is not a generic thread-exit notice; the ``[component @ 0x...]`` prefix is dropped."""
    lines = [_COMPONENT.sub("", line).strip() for line in text.splitlines()]
    lines = [line for line in lines if line and not line.startswith(_GENERIC)]
    preferred = [line for line in lines if prefer and prefer in line]
    return (preferred or lines or ["no message from ffmpeg"])[-1]


# The annotated video's encoder settings, chosen by measurement (bench/render.py; docs/benchmarks.md,
# "The annotated video"): on the sample's 1768x994 frames, x264 ``superfast`` at CRF 25 keeps the picture
# as close to the source as the former ``veryfast`` at CRF 23 (SSIM 0.979 both) and encodes about twice
# as fast, for files about 1.2 times as large.
PRESET = "superfast"
CRF = 25


class SegmentWriter:
    """Pipe ``width`` x ``height`` frames into ffmpeg, one output frame per input frame.

    ``pixel_format``: ``bgr24`` (OpenCV's images; ffmpeg converts them to
    yuv420p) or ``yuv420p`` / ``yuvj420p`` (I420 arrays of ``height * 3 / 2``
    rows, even sizes only: encoded as they are, no conversion). ``colour``:
    the stream's colour tags to keep (``colorspace``, ``color_primaries``,
    ``color_trc``, ``color_range``: FFmpeg's names); for I420 frames they say
    what the frames are, and the encoded stream carries them unchanged.

    Use as a context manager: a clean exit finishes the file (``close``); an
    exception kills ffmpeg and removes the partial file. ``threads`` is passed
    to libx264 (0: ffmpeg's default for the machine).
    """

    def __init__(
        self,
        path: str | os.PathLike,
        width: int,
        height: int,
        fps: float,
        preset: str = PRESET,
        crf: int = CRF,
        threads: int = 0,
        pixel_format: str = "bgr24",
        colour: dict[str, str] | None = None,
    ) -> None:
        if width <= 0 or height <= 0:
            raise ValueError(f"frame size must be positive, got {width}x{height}")
        if pixel_format not in ("bgr24", "yuv420p", "yuvj420p"):
            raise ValueError(f"pixel_format: expected bgr24, yuv420p or yuvj420p, got {pixel_format!r}")
        planar = pixel_format != "bgr24"
        if planar and (width % 2 or height % 2):
            raise ValueError(f"{pixel_format} frames must have an even size, got {width}x{height}")
        self.pixel_format = pixel_format
        self.frame_shape = (height * 3 // 2, width) if planar else (height, width, 3)
        exe = ffmpeg_exe()
        self.path = Path(path)
        self.width = width
        self.height = height
        self.rate = fps_fraction(fps)
        self.coded_size = (width + width % 2, height + height % 2)
        self.frames_written = 0
        self._stderr = tempfile.TemporaryFile()  # noqa: SIM115 - open while ffmpeg runs, closed by close() or abort()
        self._proc: subprocess.Popen | None = None
        self._closed = False
        timescale = str(track_timescale(self.rate))
        tags = [arg for option, value in sorted((colour or {}).items()) for arg in (f"-{option}", value)]
        command = [exe, *_QUIET, "-f", "rawvideo", "-pix_fmt", pixel_format, "-s", f"{width}x{height}"]
        # I420 frames: the tags describe the input (options before ``-i``). Given to the encoder only,
        # they made ffmpeg convert the frames from its default (BT.601, video levels) to the tagged
        # matrix or range, and drop the primaries and transfer tags.
        command += tags if planar else []
        command += ["-r", str(self.rate), "-i", "-"]
        if width % 2 or height % 2:
            pad = f"pad={self.coded_size[0]}:{self.coded_size[1]}"
            command += ["-vf", f"{pad},fillborders=right={width % 2}:bottom={height % 2}:mode=smear"]
        command += ["-c:v", "libx264", "-preset", preset, "-crf", str(crf), "-threads", str(threads), "-bf", "0"]
        command += ["-pix_fmt", pixel_format if planar else "yuv420p"]
        command += [] if planar else tags  # BGR frames: the encoder's, ffmpeg converts to them
        command += ["-fps_mode", "passthrough", "-an", "-video_track_timescale", timescale]
        command += ["-f", "mp4", str(self.path)]
        logger.debug("ffmpeg: %s", subprocess.list2cmdline(command))
        try:
            self._proc = subprocess.Popen(
                command, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=self._stderr
            )
        except OSError as exc:
            self._stderr.close()
            raise OutputError(f"{self.path}: cannot start ffmpeg: {exc}") from exc

    def __enter__(self) -> SegmentWriter:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()

    def write(self, frame: np.ndarray) -> None:
        """Append one frame: a ``uint8`` array of shape ``(height, width, 3)`` (BGR) or
        ``(height * 3 / 2, width)`` (I420)."""
        expected = self.frame_shape
        if frame.shape != expected or frame.dtype != np.uint8:
            raise ValueError(f"expected a uint8 frame of shape {expected}, got {frame.dtype} {frame.shape}")
        if self._closed or self._proc is None or self._proc.stdin is None:
            raise OutputError(f"{self.path}: write after close")
        try:
            self._proc.stdin.write(memoryview(np.ascontiguousarray(frame)).cast("B"))
        except (BrokenPipeError, OSError) as exc:
            raise self._failure(self._proc.wait()) from exc
        self.frames_written += 1

    def close(self) -> None:
        """Finish the file; raise OutputError (ffmpeg's last message) if encoding failed."""
        if self._closed or self._proc is None:
            return
        if self.frames_written == 0:
            self.abort()
            raise OutputError(f"{self.path}: no frames were written")
        self._closed = True
        with contextlib.suppress(BrokenPipeError, OSError):
            self._proc.stdin.close()
        code = self._proc.wait()
        error = self._failure(code) if code != 0 else None
        self._stderr.close()
        if error is not None:
            self.path.unlink(missing_ok=True)
            raise error
        logger.debug("wrote %s (%d frames)", self.path, self.frames_written)

    def abort(self) -> None:
        """Kill ffmpeg and remove the partial file."""
        if self._closed or self._proc is None:
            return
        self._closed = True
        self._proc.kill()
        with contextlib.suppress(BrokenPipeError, OSError):
            self._proc.stdin.close()
        self._proc.wait()
        self._stderr.close()
        self.path.unlink(missing_ok=True)

    def _failure(self, code: int) -> OutputError:
        self._stderr.seek(0)
        message = _last_line(self._stderr.read().decode("utf-8", "replace"))
        return OutputError(f"{self.path}: ffmpeg failed (exit {code}): {message}")


def join_segments(segments: list[Path], out_path: Path, fps: float) -> None:
    """Concatenate MP4 segments written by SegmentWriter at ``fps`` into one MP4, without re-encoding.

    The result (``+faststart``: index first, playable while downloading) is
    written under a temporary name in the destination folder and renamed into
    place only when complete; on failure no file is left behind.
    """
    if not segments:
        raise OutputError(f"{out_path}: no segments to join")
    missing = [str(path) for path in segments if not Path(path).is_file()]
    if missing:
        raise OutputError(f"{out_path}: missing segment {missing[0]}")
    out_path = Path(out_path)
    timescale = str(track_timescale(fps_fraction(fps)))
    listing = "".join("file '{}'\n".format(str(Path(p).resolve()).replace("'", "'\\''")) for p in segments)
    temp = out_path.with_name(f".{out_path.name}.{os.getpid()}-{secrets.token_hex(4)}.part")
    with tempfile.NamedTemporaryFile("w", suffix=".txt", encoding="utf-8") as list_file:
        list_file.write(listing)
        list_file.flush()
        command = [ffmpeg_exe(), *_QUIET, "-xerror", "-f", "concat", "-safe", "0", "-i", list_file.name]
        command += ["-map", "0:v:0", "-c", "copy", "-movflags", "+faststart", "-video_track_timescale", timescale]
        command += ["-f", "mp4", str(temp)]
        logger.debug("ffmpeg: %s", subprocess.list2cmdline(command))
        try:
            result = subprocess.run(command, stdin=subprocess.DEVNULL, capture_output=True, text=True, errors="replace")
        except OSError as exc:
            temp.unlink(missing_ok=True)
            raise OutputError(f"{out_path}: cannot start ffmpeg: {exc}") from exc
    if result.returncode != 0:
        temp.unlink(missing_ok=True)
        message = _last_line(result.stderr, prefer="Impossible to open")
        raise OutputError(f"{out_path}: joining {len(segments)} segments failed (exit {result.returncode}): {message}")
    try:
        os.replace(temp, out_path)
    except OSError as exc:
        temp.unlink(missing_ok=True)
        raise OutputError(f"{out_path}: cannot move the joined file into place: {exc.strerror or exc}") from exc
    logger.debug("joined %d segments into %s", len(segments), out_path)
