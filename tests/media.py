"""Small, deterministic "bad input" videos for the input-robustness tests.

Each generator writes one file (or a pair) into a destination folder and returns its path. Most are cut from the
real sample clip ``public/demo.mp4`` (VP9 in MP4, 1768x994, 30 fps, 230 frames, two people), so the content is real
footage rather than a test pattern; the rest need no input at all. Everything goes through the ffmpeg binary of
imageio-ffmpeg with libx264 ``-preset veryfast`` (``yuv420p`` unless noted), no audio track (except in
:func:`audio_only`), and ``+bitexact`` flags: the same ffmpeg build writes byte-identical files on every run. Each
generator takes under 3 s on two cores; most well under 1 s once the shared scale-down exists.

The 640x360 clips share one in-memory scale-down of the sample's first frames (:func:`_small_frames`), decoded once
per process.

:func:`measure` reports what OpenCV's FFmpeg backend makes of a file: that is what the pipeline sees. The docstrings
record what it reported when this module was written (OpenCV 5.0.0, ffmpeg n9.0.2 from imageio-ffmpeg).
"""

from __future__ import annotations

import functools
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

SMALL_SIZE = (640, 360)
"""``(width, height)`` of the scaled-down clips."""

FPS = 30
"""Frame rate of the sample clip and of every constant-rate clip made here."""

_SMALL_END = 120
"""The cached scale-down holds sample frames ``0 .. _SMALL_END - 1``."""

_SMALL_FRAME_BYTES = SMALL_SIZE[0] * SMALL_SIZE[1] * 3 // 2
"""Size of one raw ``yuv420p`` frame of the scale-down."""

NO_PERSON_BOX = (0, 220, 480, 490)
"""``(x0, y0, x1, y1)`` of the sample region used by :func:`no_person`, pixels, end exclusive (16:9).

Left of the box the man stands on, frames 0-44: buildings, trees, sky and the top of the box. Over those frames the man
stays right of x = 495 and the woman enters on the far right (x > 1250) around frame 44; she crosses the left half of
the frame only from frame ~140 on, and below y = 540.
"""

NO_PERSON_FRAMES = 45
"""Length of :func:`no_person`, frames (sample frames ``0 .. 44``)."""

VFR_SPLIT = 30
"""Frames ``0 .. VFR_SPLIT - 1`` of :func:`variable_frame_rate` are 1/30 s apart, the rest 1/15 s."""

VFR_FRAMES = 60
"""Length of :func:`variable_frame_rate`, frames (sample frames ``40 .. 99``)."""

VFR_SAMPLE_FRAMES = 230
"""Length of :func:`variable_frame_rate_sample`: the whole sample."""

VFR_SAMPLE_SPLIT = 115
"""Frames ``0 .. VFR_SAMPLE_SPLIT`` of :func:`variable_frame_rate_sample` are 1/30 s apart, the rest 1/15 s."""

_TIMESCALE = 90000
"""MP4 track timescale (ticks per second) used where timestamps are rewritten."""

_QUIET = ("-hide_banner", "-loglevel", "error", "-nostdin", "-y")
_BITEXACT = ("-map_metadata", "-1", "-fflags", "+bitexact", "-flags", "+bitexact")
_X264 = ("-c:v", "libx264", "-preset", "veryfast", "-pix_fmt", "yuv420p")
_VIDEO_ONLY = ("-an", "-sn", "-dn")
_RAW = ("-f", "rawvideo", "-pix_fmt", "yuv420p")


# --------------------------------------------------------------------------------------------------------------------
# ffmpeg plumbing


def _ffmpeg(*args: str | int | os.PathLike, stdin: bytes | None = None) -> bytes:
    """Run ffmpeg quietly with ``args``; return its stdout, raise ``RuntimeError`` with its stderr on failure."""
    import imageio_ffmpeg

    command = [imageio_ffmpeg.get_ffmpeg_exe(), *_QUIET, *map(str, args)]
    result = subprocess.run(command, input=stdin, capture_output=True, check=False)
    if result.returncode != 0:
        raise RuntimeError(f"ffmpeg failed ({result.returncode}): {result.stderr.decode(errors='replace').strip()}")
    return result.stdout


def _cut(start: int, count: int, *filters: str) -> str:
    """Filter chain keeping sample frames ``start .. start + count - 1`` (timestamps from 0), then ``filters``."""
    return ",".join([f"trim=start_frame={start}:end_frame={start + count}", "setpts=PTS-STARTPTS", *filters])


def _from_sample(sample: Path, out: Path, start: int, count: int, *filters: str, codec=_X264, extra=()) -> Path:
    """Encode ``count`` frames of the sample from ``start`` through ``filters``, video only."""
    select = ("-vf", _cut(start, count, *filters), "-frames:v", count, *_VIDEO_ONLY)
    _ffmpeg("-i", sample, *select, *codec, *extra, *_BITEXACT, out)
    return out


@functools.lru_cache(maxsize=2)
def _small_frames_cached(sample: str, _stamp: tuple[int, int]) -> bytes:
    width, height = SMALL_SIZE
    scale = f"trim=end_frame={_SMALL_END},scale={width}:{height}"
    frames = _ffmpeg("-i", sample, "-vf", scale, *_VIDEO_ONLY, *_RAW, "pipe:1")
    if len(frames) != _SMALL_END * _SMALL_FRAME_BYTES:
        raise RuntimeError(f"scale-down of {sample}: {len(frames)} bytes, expected {_SMALL_END * _SMALL_FRAME_BYTES}")
    return frames


def _small_frames(sample: Path, start: int, count: int) -> bytes:
    """Raw ``yuv420p`` 640x360 frames ``start .. start + count - 1`` of the sample (one decode per process)."""
    if start < 0 or start + count > _SMALL_END:
        raise ValueError(f"frames {start}..{start + count - 1} are outside the cached 0..{_SMALL_END - 1}")
    stat = Path(sample).stat()
    frames = _small_frames_cached(str(Path(sample).resolve()), (stat.st_mtime_ns, stat.st_size))
    return frames[start * _SMALL_FRAME_BYTES : (start + count) * _SMALL_FRAME_BYTES]


def _small_clip(sample: Path, out: Path, start: int, count: int, *, extra=()) -> Path:
    """Encode 640x360 sample frames ``start ..`` at 30 fps with libx264 into ``out``."""
    width, height = SMALL_SIZE
    raw_input = (*_RAW, "-s", f"{width}x{height}", "-r", FPS, "-i", "pipe:0")
    _ffmpeg(*raw_input, *_X264, *extra, *_BITEXACT, out, stdin=_small_frames(sample, start, count))
    return out


def _folder(dest: Path) -> Path:
    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    return dest


# --------------------------------------------------------------------------------------------------------------------
# Not a video at all


def zero_byte(dest: Path) -> Path:
    """``zero.mp4``: an empty file. OpenCV does not open it."""
    path = _folder(dest) / "zero.mp4"
    path.write_bytes(b"")
    return path


def text_as_mp4(dest: Path) -> Path:
    """``notes.mp4``: a few lines of plain text with a video extension. OpenCV does not open it."""
    path = _folder(dest) / "notes.mp4"
    path.write_text(
        "Shopping list\n- 2 kg of potatoes\n- olive oil\n- call the plumber about the kitchen sink\n",
        encoding="utf-8",
    )
    return path


def truncated_mp4(dest: Path, sample: Path) -> Path:
    """``truncated.mp4``: the first half of the bytes of a complete 640x360 H.264 MP4 (sample frames 0-89).

    The complete file is written with ``-movflags +faststart``, so the ``moov`` atom (the index of all 90 frames)
    comes first and survives intact; only the second half of ``mdat`` is missing, like an interrupted download or
    copy. OpenCV (``CAP_FFMPEG``) opens it and reports ``CAP_PROP_FRAME_COUNT`` 90, 30 fps and 640x360 from the
    index, but ``read()`` returns only the frames whose data is present, 31 of them (the first 1.03 s; the exact number
    depends on the x264 build), then ``False`` (FFmpeg logs "partial file" / "Invalid NAL unit size"). PyAV likewise
    reports 90 frames and 3.0 s, decodes 31 and then raises ``av.InvalidDataError``.
    """
    path = _folder(dest) / "truncated.mp4"
    with tempfile.TemporaryDirectory(prefix="media-") as tmp:
        full = _small_clip(sample, Path(tmp) / "full.mp4", 0, 90, extra=("-movflags", "+faststart"))
        data = full.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    return path


def audio_only(dest: Path) -> Path:
    """``audio.mp4``: 2 s of a 440 Hz AAC sine (44.1 kHz mono, 64 kb/s), no video stream.

    OpenCV does not open it (``isOpened()`` is false; it logs "backend is generally available but can't be used to
    capture by name"). PyAV opens it: one ``aac`` stream of 2.0 s, no video stream.
    """
    path = _folder(dest) / "audio.mp4"
    sine = "sine=frequency=440:sample_rate=44100:duration=2"
    _ffmpeg("-f", "lavfi", "-i", sine, "-c:a", "aac", "-b:a", "64k", *_BITEXACT, path)
    return path


# --------------------------------------------------------------------------------------------------------------------
# Valid videos with unusual content or shape


def no_person(dest: Path, sample: Path) -> Path:
    """``empty_scene.mp4``: 45 frames (30 fps, 640x360) of real outdoor footage with nobody in it.

    The region :data:`NO_PERSON_BOX` of sample frames 0-44 (hand-held camera, so the scene moves slightly), scaled
    up from 480x270. MediaPipe's lite pose landmarker (Tasks API, VIDEO mode, ``num_poses`` 1 or 2) detects no pose in
    any frame, while the same run finds a pose in all 20 frames of :func:`same_name_pair`'s first clip. OpenCV reads
    45 frames at 30 fps.
    """
    x0, y0, x1, y1 = NO_PERSON_BOX
    crop = f"crop={x1 - x0}:{y1 - y0}:{x0}:{y0}"
    scale = "scale={}:{}".format(*SMALL_SIZE)
    return _from_sample(sample, _folder(dest) / "empty_scene.mp4", 0, NO_PERSON_FRAMES, crop, scale)


def one_frame(dest: Path, sample: Path) -> Path:
    """``single.mp4``: exactly one frame, sample frame 80 (the man standing on the box), 884x498.

    OpenCV reports ``CAP_PROP_FRAME_COUNT`` 1 and 30 fps and reads one frame.
    """
    return _from_sample(sample, _folder(dest) / "single.mp4", 80, 1, "scale=884:498")


def odd_size(dest: Path, sample: Path) -> Path:
    """``odd_333x211.mp4``: 30 frames from sample frame 60 at exactly 333x211 (both odd).

    4:2:0 cannot represent odd sizes, so this is libx264 ``yuv444p`` (High 4:4:4 Predictive profile). OpenCV decodes
    333x211 frames.
    """
    codec = ("-c:v", "libx264", "-preset", "veryfast", "-pix_fmt", "yuv444p")
    return _from_sample(sample, _folder(dest) / "odd_333x211.mp4", 60, 30, "scale=333:211", codec=codec)


def portrait_rotated(dest: Path, sample: Path) -> Path:
    """``portrait.mp4``: 40 frames from sample frame 60 as a phone records them: a portrait picture (360x640 as
    shown, the man upright) stored as landscape 640x360 pixels plus a display matrix asking players to turn it 90
    degrees clockwise.

    The portrait crop ``560x994`` at ``x = 360`` of the sample (the man on the box) is scaled to 360x640 and turned
    counter-clockwise for storage (``transpose=2``); the remux with the input option ``-display_rotation -90``
    (ffmpeg counts counter-clockwise; the legacy ``-metadata:s:v rotate=90`` is silently ignored by ffmpeg 9) adds
    the matrix. OpenCV with ``CAP_PROP_ORIENTATION_AUTO`` = 1 (on by default in OpenCV 5) reports
    ``CAP_PROP_ORIENTATION_META`` = 90 and reads upright 360 wide x 640 high frames.
    """
    path = _folder(dest) / "portrait.mp4"
    with tempfile.TemporaryDirectory(prefix="media-") as tmp:
        stored = _from_sample(
            sample, Path(tmp) / "stored.mp4", 60, 40, "crop=560:994:360:0", "scale=360:640", "transpose=2"
        )
        _ffmpeg("-display_rotation", -90, "-i", stored, "-c", "copy", *_BITEXACT, path)
    return path


def vfr_timestamps_s() -> list[float]:
    """Intended presentation times of the frames of :func:`variable_frame_rate`, seconds (exact in 1/90000 ticks)."""
    return [(i if i < VFR_SPLIT else 2 * i - VFR_SPLIT) / FPS for i in range(VFR_FRAMES)]


def variable_frame_rate(dest: Path, sample: Path) -> Path:
    """``vfr.mp4``: 60 frames (sample frames 40-99, 640x360, H.264) with irregular timestamps.

    Frames 0-29 are 1/30 s apart and frames 30-59 1/15 s apart (:func:`vfr_timestamps_s`); the last frame lasts
    1/15 s, so the clip lasts exactly 3 s, 20 fps on average. Made by encoding at a constant 30 fps without B-frames
    (so decode order is presentation order) into a 1/90000 timescale, then remuxing through the ``setts`` bitstream
    filter, which doubles every timestamp interval from 1 s on.

    OpenCV reports ``CAP_PROP_FPS`` 20.0 (frames over duration) and ``CAP_PROP_FRAME_COUNT`` 60, ``read()`` returns all
    60 frames, and ``CAP_PROP_POS_MSEC`` after each read is that frame's true time (0, 33.3, ..., 966.7, 1000, 1066.7,
    ..., 2933.3 ms). A reader that dates frame ``i`` as ``i / CAP_PROP_FPS`` is wrong by up to 0.5 s (frame 30: 1.5 s
    instead of 1.0 s). PyAV: ``time_base`` 1/90000, ``average_rate`` 20, duration 3.0 s; :func:`packet_times_s` equals
    :func:`vfr_timestamps_s`.
    """
    path = _folder(dest) / "vfr.mp4"
    split = VFR_SPLIT * _TIMESCALE // FPS
    rewrite = (
        f"setts=pts=if(lt(PTS\\,{split})\\,PTS\\,2*PTS-{split})"
        f":dts=if(lt(DTS\\,{split})\\,DTS\\,2*DTS-{split})"
        f":duration=if(lt(PTS\\,{split})\\,DURATION\\,2*DURATION)"
    )
    timescale = ("-video_track_timescale", _TIMESCALE)
    with tempfile.TemporaryDirectory(prefix="media-") as tmp:
        cfr = _small_clip(sample, Path(tmp) / "cfr.mp4", 40, VFR_FRAMES, extra=("-bf", 0, *timescale))
        _ffmpeg("-i", cfr, "-c", "copy", "-bsf:v", rewrite, *timescale, *_BITEXACT, path)
    return path


def vfr_sample_timestamps_s() -> list[float]:
    """Presentation times of the frames of :func:`variable_frame_rate_sample`, seconds (exact in the sample's ticks)."""
    split = VFR_SAMPLE_SPLIT
    return [(i if i <= split else 2 * i - split) / FPS for i in range(VFR_SAMPLE_FRAMES)]


def variable_frame_rate_sample(dest: Path, sample: Path) -> Path:
    """``vfr_sample.mp4``: the whole sample (230 frames, 1768x994, VP9, both people) with irregular timestamps.

    Frames 0-115 keep their times, 1/30 s apart; from frame 115 on every interval is doubled (1/15 s), so the clip
    lasts 11.5 s, 20 fps on average (:func:`vfr_sample_timestamps_s`). A remux only (no re-encoding, about 0.1 s):
    the ``setts`` bitstream filter rewrites the timestamps in the sample's own time base (1/15360; VP9 has no
    reordering, so DTS = PTS), the split being the timestamp of frame :data:`VFR_SAMPLE_SPLIT`.

    The probe reports ``variable_frame_rate`` True, 230 frames and OpenCV's ``CAP_PROP_FPS`` 20.0. A reader that
    dates frame ``i`` at the average rate (``i / 20``) is wrong by up to 1.9 s (frame 115), at ``i / 30`` by up to
    3.8 s (the last frame).
    """
    split = packet_ticks(sample)[VFR_SAMPLE_SPLIT]
    rewrite = (
        f"setts=pts=if(lt(PTS\\,{split})\\,PTS\\,2*PTS-{split})"
        f":dts=if(lt(DTS\\,{split})\\,DTS\\,2*DTS-{split})"
        f":duration=if(lt(PTS\\,{split})\\,DURATION\\,2*DURATION)"
    )
    path = _folder(dest) / "vfr_sample.mp4"
    _ffmpeg("-i", sample, "-map", "0:v:0", "-c", "copy", "-bsf:v", rewrite, *_BITEXACT, path)
    return path


def four_k(dest: Path, sample: Path) -> Path:
    """``uhd.mp4``: 8 frames from sample frame 80, scaled up to 3840x2160, H.264 ``yuv420p`` (about 0.5 MB).

    OpenCV reads 8 frames of 3840x2160. The slowest generator: 1.2-2.3 s on two cores, mostly the 4K encode.
    """
    return _from_sample(sample, _folder(dest) / "uhd.mp4", 80, 8, "scale=3840:2160")


# --------------------------------------------------------------------------------------------------------------------
# File-system cases


def unreadable(dest: Path, sample: Path) -> Path:
    """``locked.mp4``: the clip of :func:`one_frame` with mode ``0o000``.

    Root ignores file permissions and still reads it, so tests of this case must skip when ``os.geteuid() == 0``
    (as in the container these helpers were written in, where :func:`measure` reads its one frame as usual). pytest
    can still delete it: removal needs write permission on the folder, not on the file.
    """
    path = _folder(dest) / "locked.mp4"
    path.unlink(missing_ok=True)  # a locked leftover could not be overwritten
    with tempfile.TemporaryDirectory(prefix="media-") as tmp:
        shutil.copyfile(one_frame(Path(tmp), sample), path)
    path.chmod(0o000)
    return path


def same_name_pair(dest: Path, sample: Path) -> tuple[Path, Path]:
    """``a/clip.mp4`` and ``b/clip.mp4``: two different 20-frame 640x360 clips (sample frames 60-79 and 100-119)
    with the same file name, for output-name collisions."""
    first = _small_clip(sample, _folder(Path(dest) / "a") / "clip.mp4", 60, 20)
    second = _small_clip(sample, _folder(Path(dest) / "b") / "clip.mp4", 100, 20)
    return first, second


# --------------------------------------------------------------------------------------------------------------------
# Damaged data inside a valid container

DAMAGED_FRAMES = 60
"""Length of :func:`damaged_packets`, frames (sample frames 0-59, 640x360, 30 fps, H.264 with B-frames)."""

DAMAGED_PACKETS = (20, 21, 22)
"""Packets (decode order, counting from 0) of :func:`damaged_packets` whose bytes are overwritten."""

UNDECODABLE_FRAMES = (19, 22, 24)
"""The frames (presentation order) those packets hold: the ones no decoder can produce."""


def damaged_packets(dest: Path, sample: Path) -> Path:
    """``damaged.mp4``: a 60-frame clip whose packets :data:`DAMAGED_PACKETS` are overwritten with ``0xFF`` bytes in
    place, as a bad sector or a broken copy would leave them: the index (``moov``) is intact and lists 60 frames.

    FFmpeg's H.264 decoder rejects each of those packets ("Invalid NAL unit size"), so frames
    :data:`UNDECODABLE_FRAMES` cannot be decoded, whatever frame decoding starts from; every other frame decodes (the
    damaged ones are B-frames that nothing references). OpenCV's ``grab()`` returns 18 frames and then ``False``, as
    if the stream had ended.
    """
    import av

    path = _folder(dest) / "damaged.mp4"
    _small_clip(sample, path, 0, DAMAGED_FRAMES)
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        packets = [(p.pos, p.size) for p in container.demux(stream) if p.size]
    data = bytearray(path.read_bytes())
    for k in DAMAGED_PACKETS:
        pos, size = packets[k]
        data[pos : pos + size] = b"\xff" * size
    path.write_bytes(bytes(data))
    return path


NOISE_OFFSET = 1937 * 1024
"""Where :func:`random_bytes` overwrites the sample, bytes from the start (inside frame data, past the first half)."""


def random_bytes(dest: Path, sample: Path) -> Path:
    """``noisy.mp4``: the sample with 20 KiB of (seeded) random bytes written over it at :data:`NOISE_OFFSET`, like
    ``dd if=/dev/urandom of=noisy.mp4 bs=1024 count=20 seek=1937 conv=notrunc``.

    The damage falls in the VP9 data of frames 121 on. OpenCV's ``grab()`` fails at frame 121 (a reader that takes
    that for the end of the stream keeps 121 of 230 frames); FFmpeg's VP9 decoder with slice threads conceals the
    damage and produces all 230 frames, as players do.
    """
    import random

    path = _folder(dest) / "noisy.mp4"
    data = bytearray(Path(sample).read_bytes())
    data[NOISE_OFFSET : NOISE_OFFSET + 20 * 1024] = random.Random(1937).randbytes(20 * 1024)
    path.write_bytes(bytes(data))
    return path


# --------------------------------------------------------------------------------------------------------------------
# Inspection


def measure(path: Path) -> dict:
    """What OpenCV's FFmpeg backend reports for ``path``, with automatic orientation on.

    ``width``/``height`` are the properties after ``CAP_PROP_ORIENTATION_AUTO`` = 1, ``frames_read`` how many frames
    ``read()`` returned before the first failure, ``shapes`` the distinct ``(height, width)`` of those frames and
    ``pos_msec`` ``CAP_PROP_POS_MSEC`` after each read. An unopened file gives ``opened=False`` and zeros.
    """
    import cv2

    cap = cv2.VideoCapture(str(path), cv2.CAP_FFMPEG)
    report = {
        "opened": bool(cap.isOpened()),
        "fps": 0.0,
        "frame_count": 0,
        "width": 0,
        "height": 0,
        "orientation_meta": 0,
        "frames_read": 0,
        "shapes": [],
        "pos_msec": [],
    }
    if not report["opened"]:
        cap.release()
        return report
    cap.set(cv2.CAP_PROP_ORIENTATION_AUTO, 1)
    report.update(
        fps=cap.get(cv2.CAP_PROP_FPS),
        frame_count=int(cap.get(cv2.CAP_PROP_FRAME_COUNT)),
        width=int(cap.get(cv2.CAP_PROP_FRAME_WIDTH)),
        height=int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT)),
        orientation_meta=int(cap.get(cv2.CAP_PROP_ORIENTATION_META)),
    )
    shapes = set()
    while True:
        ok, frame = cap.read()
        if not ok or frame is None:
            break
        report["frames_read"] += 1
        shapes.add(frame.shape[:2])
        report["pos_msec"].append(cap.get(cv2.CAP_PROP_POS_MSEC))
    cap.release()
    report["shapes"] = sorted(shapes)
    return report


def packet_times_s(path: Path) -> list[float]:
    """Presentation times (seconds, sorted) of the video packets of ``path``, read with PyAV without decoding."""
    import av

    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        times = [float(p.pts * stream.time_base) for p in container.demux(stream) if p.pts is not None]
    return sorted(times)


def packet_ticks(path: Path) -> list[int]:
    """Presentation timestamps (in the stream's time base, sorted) of the video packets of ``path``."""
    import av

    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        return sorted(int(p.pts) for p in container.demux(stream) if p.pts is not None and p.size)


REVERSED_SIZE = (1280, 720)
"""``(width, height)`` of :func:`reversed_mirrored`."""

REVERSED_FRAMES = 230
"""Length of :func:`reversed_mirrored`: the whole sample."""


def reversed_mirrored(dest: Path, sample: Path) -> Path:
    """``reversed.mp4``: the whole sample played backwards and mirrored left to right, 1280x720, 30 fps, H.264.

    A second two-person clip of real footage for the equivalence tests: the same two people, but the woman walks the
    other way across the frame and enters and leaves at other moments, the man rises onto the box instead of dropping
    from it, so the trackers lose and find them at other frames than in the sample.
    """
    width, height = REVERSED_SIZE
    out = _folder(dest) / "reversed.mp4"
    return _from_sample(sample, out, 0, REVERSED_FRAMES, "reverse", "hflip", f"scale={width}:{height}")
