"""SegmentWriter and join_segments on real media, checked by decoding the results with PyAV."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import av
import cv2
import numpy as np
import pytest

from pipeline.errors import OutputError
from pipeline.video.probe import open_capture
from pipeline.video.writer import SegmentWriter, fps_fraction, join_segments

SAMPLE_BOUNDS = [(0, 80), (80, 160), (160, 230)]
SAMPLE_CHECKED = (0, 40, 79, 80, 120, 159, 160, 200, 229)
MAX_MEAN_DIFF = 6.0
STAMP_BITS = 8


def stamp(frame: np.ndarray, index: int, block: int) -> np.ndarray:
    """A copy of ``frame`` with ``index`` drawn in its top-left corner as a row of black/white squares."""
    frame = frame.copy()
    for bit in range(STAMP_BITS):
        frame[:block, bit * block : (bit + 1) * block] = 255 if (index >> bit) & 1 else 0
    return frame


def read_stamp(luma: np.ndarray, block: int) -> int:
    centre = slice(block // 4, block - block // 4)
    bits = [luma[centre, bit * block : (bit + 1) * block][:, centre].mean() > 128 for bit in range(STAMP_BITS)]
    return sum(int(value) << bit for bit, value in enumerate(bits))


def decode(path: Path, keep: tuple[int, ...] = (), block: int = 0) -> dict:
    """Stream facts from the container plus a full decode: the frame count, the frames in ``keep`` as
    BGR and, when ``block`` is given, the index stamped into every frame in decoding order."""
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        facts = {
            "codec": stream.codec_context.name,
            "pix_fmt": stream.codec_context.pix_fmt,
            "width": stream.codec_context.width,
            "height": stream.codec_context.height,
            "average_rate": stream.average_rate,
            "duration_s": container.duration / av.time_base,
            "frames": {},
            "stamps": [],
            "pts": [],
        }
        count = 0
        for frame in container.decode(video=0):
            facts["pts"].append(frame.pts)
            if count in keep:
                facts["frames"][count] = frame.to_ndarray(format="bgr24")
            if block:
                facts["stamps"].append(read_stamp(frame.to_ndarray(format="gray"), block))
            count += 1
        facts["count"] = count
    return facts


def mean_diff(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.mean(np.abs(a.astype(np.int16) - b.astype(np.int16))))


def assert_timing(facts: dict, frames: int, fps: float) -> None:
    assert facts["count"] == frames
    assert abs(float(facts["average_rate"]) - fps) <= 1e-3 * fps
    assert abs(facts["duration_s"] - frames / fps) < 1.0 / fps
    assert len(set(np.diff(facts["pts"]).tolist())) <= 1, "frame period not constant"


def synthetic_frame(index: int, width: int, height: int) -> np.ndarray:
    """A smooth gradient with a bright square whose position encodes ``index``."""
    x = np.linspace(0, 160, width, dtype=np.float32)[None, :]
    y = np.linspace(0, 80, height, dtype=np.float32)[:, None]
    frame = np.empty((height, width, 3), np.uint8)
    frame[..., 0] = (x + y).astype(np.uint8)
    frame[..., 1] = 60
    frame[..., 2] = (200 - y).astype(np.uint8)
    col = (index * 23) % (width - 40)
    row = (index * 11) % (height - 40)
    frame[row : row + 40, col : col + 40] = 255
    return frame


def write_synthetic(folder: Path, counts: list[int], width: int, height: int, fps: float) -> list[Path]:
    segments, index = [], 0
    for number, count in enumerate(counts):
        path = folder / f"segment{number}.mp4"
        with SegmentWriter(path, width, height, fps) as writer:
            for _ in range(count):
                writer.write(stamp(synthetic_frame(index, width, height), index, 12))
                index += 1
        assert writer.frames_written == count
        segments.append(path)
    return segments


@pytest.fixture(scope="module")
def joined_sample(sample_video, tmp_path_factory):
    """The sample clip, each frame stamped with its index, encoded as three segments and joined;
    the stamped source frames in SAMPLE_CHECKED."""
    folder = tmp_path_factory.mktemp("writer")
    cap = open_capture(sample_video)
    width = int(cap.get(cv2.CAP_PROP_FRAME_WIDTH))
    height = int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT))
    source, segments = {}, []
    try:
        for number, (start, end) in enumerate(SAMPLE_BOUNDS):
            path = folder / f"part{number}.mp4"
            with SegmentWriter(path, width, height, 30.0) as writer:
                for index in range(start, end):
                    ok, frame = cap.read()
                    assert ok, f"source frame {index} unreadable"
                    frame = stamp(frame, index, 24)
                    writer.write(frame)
                    if index in SAMPLE_CHECKED:
                        source[index] = frame
            segments.append(path)
    finally:
        cap.release()
    out = folder / "joined.mp4"
    join_segments(segments, out, 30.0)
    return out, segments, source


def test_sample_clip_segments_join_exactly(joined_sample):
    out, segments, source = joined_sample
    for path, (start, end) in zip(segments, SAMPLE_BOUNDS):
        assert decode(path)["count"] == end - start
    facts = decode(out, keep=SAMPLE_CHECKED, block=24)
    assert facts["codec"] == "h264"
    assert facts["pix_fmt"] == "yuv420p"
    assert (facts["width"], facts["height"]) == (1768, 994)
    assert facts["average_rate"] == 30
    assert_timing(facts, 230, 30.0)
    assert facts["stamps"] == list(range(230))
    for index in SAMPLE_CHECKED:
        assert mean_diff(facts["frames"][index], source[index]) < MAX_MEAN_DIFF, f"frame {index}"
    assert sorted(p.name for p in out.parent.iterdir()) == ["joined.mp4", "part0.mp4", "part1.mp4", "part2.mp4"]


def test_odd_size_ntsc_rate_and_tiny_segments(tmp_path):
    width, height, fps = 333, 211, 29.97
    segments = write_synthetic(tmp_path, [7, 13, 1, 1], width, height, fps)
    out = tmp_path / "odd.mp4"
    join_segments(segments, out, fps)
    checked = (0, 6, 7, 19, 20, 21)
    facts = decode(out, keep=checked, block=12)
    assert facts["codec"] == "h264"
    assert facts["pix_fmt"] == "yuv420p"
    assert (facts["width"], facts["height"]) == (334, 212)
    assert facts["average_rate"] == Fraction(30000, 1001)
    assert_timing(facts, 22, fps)
    assert facts["stamps"] == list(range(22))
    for index in checked:
        picture = facts["frames"][index]
        expected = stamp(synthetic_frame(index, width, height), index, 12)
        assert mean_diff(picture[:height, :width], expected) < MAX_MEAN_DIFF
        assert mean_diff(picture[:height, width], picture[:height, width - 1]) < MAX_MEAN_DIFF


def test_single_segment_join(tmp_path):
    segments = write_synthetic(tmp_path, [5], 64, 48, 25.0)
    out = tmp_path / "single.mp4"
    join_segments(segments, out, 25.0)
    facts = decode(out)
    assert (facts["width"], facts["height"]) == (64, 48)
    assert_timing(facts, 5, 25.0)


def test_fps_fraction():
    assert fps_fraction(29.97) == Fraction(30000, 1001)
    assert fps_fraction(30000 / 1001) == Fraction(30000, 1001)
    assert fps_fraction(23.976) == Fraction(24000, 1001)
    assert fps_fraction(30.0) == 30
    assert fps_fraction(12.5) == Fraction(25, 2)
    with pytest.raises(ValueError):
        fps_fraction(0.0)


def test_wrong_shape_raises_and_removes_partial_file(tmp_path):
    path = tmp_path / "bad.mp4"
    expected = r"expected a uint8 frame of shape \(48, 64, 3\), got uint8 \(48, 63, 3\)"
    with pytest.raises(ValueError, match=expected), SegmentWriter(path, 64, 48, 30.0) as writer:
        writer.write(synthetic_frame(0, 64, 48))
        writer.write(np.zeros((48, 63, 3), np.uint8))
    assert writer.frames_written == 1
    assert writer._proc.returncode is not None
    assert not path.exists()
    with pytest.raises(ValueError, match="float32"), SegmentWriter(tmp_path / "float.mp4", 64, 48, 30.0) as writer:
        writer.write(np.zeros((48, 64, 3), np.float32))
    assert not (tmp_path / "float.mp4").exists()


def test_ffmpeg_failure_is_one_line_output_error(tmp_path):
    path = tmp_path / "missing" / "out.mp4"
    with pytest.raises(OutputError) as caught, SegmentWriter(path, 64, 48, 30.0) as writer:
        for index in range(200):
            writer.write(synthetic_frame(index, 64, 48))
    message = str(caught.value)
    assert "\n" not in message
    assert str(path) in message
    assert "ffmpeg failed" in message
    with pytest.raises(OutputError, match="no frames"), SegmentWriter(tmp_path / "empty.mp4", 64, 48, 30.0):
        pass
    assert not (tmp_path / "empty.mp4").exists()


def test_join_failure_leaves_nothing_behind(tmp_path):
    segments = write_synthetic(tmp_path, [3], 64, 48, 30.0)
    bogus = tmp_path / "bogus.mp4"
    bogus.write_text("not a video\n")
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    out = out_dir / "joined.mp4"
    with pytest.raises(OutputError) as caught:
        join_segments([segments[0], bogus], out, 30.0)
    assert "\n" not in str(caught.value)
    assert "Impossible to open" in str(caught.value)
    assert "bogus.mp4" in str(caught.value)
    assert list(out_dir.iterdir()) == []
    with pytest.raises(OutputError, match="missing segment"):
        join_segments([segments[0], tmp_path / "absent.mp4"], out, 30.0)
    with pytest.raises(OutputError, match="no segments"):
        join_segments([], out, 30.0)
    with pytest.raises(OutputError):
        join_segments(segments, tmp_path / "absent" / "joined.mp4", 30.0)
    assert list(out_dir.iterdir()) == []
    assert not (tmp_path / "absent").exists()


# -- I420 frames encoded as they are ---------------------------------------------------------------------------------

SAMPLE_TAGS = {"colorspace": "bt709", "color_primaries": "bt709", "color_trc": "bt709", "color_range": "tv"}


def i420_planes(frame: np.ndarray) -> list[np.ndarray]:
    height, width = frame.shape[0] * 2 // 3, frame.shape[1]
    flat = frame.reshape(-1)
    quarter = height * width // 4
    u = flat[height * width : height * width + quarter].reshape(height // 2, width // 2)
    v = flat[height * width + quarter :].reshape(height // 2, width // 2)
    return [frame[:height], u, v]


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return 10.0 * np.log10(255.0**2 / max(mse, 1e-12))


def colour_bars(width: int, height: int) -> np.ndarray:
    """I420 bars of saturated chroma over a luma ramp: any conversion of matrix or range shows."""
    luma = np.tile(np.linspace(16, 235, width).astype(np.uint8), (height, 1))
    u = np.zeros((height // 2, width // 2), np.uint8)
    v = np.zeros((height // 2, width // 2), np.uint8)
    u[:, : width // 4], u[:, width // 4 :] = 40, 210
    v[: height // 4], v[height // 4 :] = 60, 220
    return np.concatenate([luma.reshape(-1), u.reshape(-1), v.reshape(-1)]).reshape(height * 3 // 2, width)


def decode_i420(path: Path) -> tuple[dict, list[np.ndarray]]:
    with av.open(str(path)) as container:
        frames = list(container.decode(video=0))
        first = frames[0]
        facts = {
            "codec": container.streams.video[0].codec_context.name,
            "size": (first.width, first.height),
            "pix_fmt": first.format.name,
            "tags": (int(first.colorspace), int(first.color_primaries), int(first.color_trc), int(first.color_range)),
        }
        return facts, [frame.to_ndarray() for frame in frames]


def test_i420_sample_frames_are_encoded_as_they_are(tmp_path, sample_video):
    from pipeline.video.reader import iter_frames

    source = [frame for _, frame in iter_frames(str(sample_video), 100, 108, pixel_format="i420")]
    path = tmp_path / "planes.mp4"
    with SegmentWriter(path, 1768, 994, 30.0, pixel_format="yuv420p", colour=SAMPLE_TAGS) as writer:
        assert writer.frame_shape == (1491, 1768)
        for frame in source:
            writer.write(frame)
    facts, decoded = decode_i420(path)
    assert facts == {"codec": "h264", "size": (1768, 994), "pix_fmt": "yuv420p", "tags": (1, 1, 1, 1)}
    assert len(decoded) == len(source)
    for got, sent in zip(decoded, source):
        (y, u, v), (y0, u0, v0) = i420_planes(got), i420_planes(sent)
        assert psnr(y, y0) > 37 and psnr(u, u0) > 43 and psnr(v, v0) > 43  # measured 39.8, 46.7, 48.1 at least


@pytest.mark.parametrize(
    ("pixel_format", "colour", "tags"),
    [
        ("yuv420p", SAMPLE_TAGS, (1, 1, 1, 1)),
        ("yuv420p", {"colorspace": "smpte170m", "color_range": "tv"}, (6, 2, 2, 1)),
        ("yuvj420p", {"color_range": "pc"}, (2, 2, 2, 2)),
        ("yuv420p", {"color_range": "pc"}, (2, 2, 2, 2)),  # full range flagged on yuv420p, as some phones write it
        ("yuv420p", None, (2, 2, 2, 0)),
    ],
)
def test_i420_colour_tags_describe_the_frames_without_converting_them(tmp_path, pixel_format, colour, tags):
    bars = colour_bars(128, 96)
    path = tmp_path / "bars.mp4"
    with SegmentWriter(path, 128, 96, 25.0, pixel_format=pixel_format, colour=colour) as writer:
        for _ in range(3):
            writer.write(bars)
    facts, decoded = decode_i420(path)
    assert facts["tags"] == tags and facts["size"] == (128, 96) and len(decoded) == 3
    for got, sent in zip(i420_planes(decoded[0]), i420_planes(bars)):
        assert mean_diff(got, sent) < 1.5  # a conversion of matrix or range moves these bars by 9 to 28 levels


def test_i420_writer_rejects_odd_sizes_and_other_layouts(tmp_path):
    for width, height in ((333, 210), (332, 211)):
        with pytest.raises(ValueError, match=f"even size, got {width}x{height}"):
            SegmentWriter(tmp_path / "odd.mp4", width, height, 30.0, pixel_format="yuv420p")
    with pytest.raises(ValueError, match="pixel_format"):
        SegmentWriter(tmp_path / "nv12.mp4", 64, 48, 30.0, pixel_format="nv12")
    assert list(tmp_path.iterdir()) == []
    path = tmp_path / "bgr.mp4"
    expected = r"expected a uint8 frame of shape \(72, 64\), got uint8 \(48, 64, 3\)"
    with pytest.raises(ValueError, match=expected), SegmentWriter(path, 64, 48, 30.0, pixel_format="yuv420p") as writer:
        writer.write(colour_bars(64, 48))
        writer.write(np.zeros((48, 64, 3), np.uint8))
    assert writer.frames_written == 1 and not path.exists()
