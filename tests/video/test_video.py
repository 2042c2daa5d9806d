from dataclasses import replace

import cv2
import numpy as np
import pytest

from pipeline.errors import VideoError
from pipeline.video import is_sampled, iter_frames, plan_chunks, probe_video
from pipeline.video.plan import auto_batch_size
from pipeline.video.reader import i420_planes, picture_format


def test_probe_sample_clip(sample_video):
    info = probe_video(sample_video)
    assert (info.frame_count, info.width, info.height) == (230, 1768, 994)
    assert info.fps == pytest.approx(30.0)
    assert info.rotation_deg == 0
    assert info.codec == "vp09"  # the container's tag, as ffprobe names it
    assert info.duration_s == pytest.approx(230 / 30)


@pytest.mark.parametrize("content", [b"", b"this is not a video\n" * 20])
def test_probe_rejects_non_video(tmp_path, content):
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(content)
    with pytest.raises(VideoError, match="bad.mp4"):
        probe_video(bad)


def test_probe_missing_file(tmp_path):
    with pytest.raises(VideoError, match="no such file"):
        probe_video(tmp_path / "missing.mp4")


@pytest.mark.parametrize("batch", [1, 7, 40, 48, 229, 230, 1000])
@pytest.mark.parametrize("warmup", [0, 16])
def test_plan_covers_every_frame_once(sample_video, batch, warmup):
    info = probe_video(sample_video)
    chunks = plan_chunks(info, batch, warmup)
    kept = np.concatenate([np.arange(c.start, c.end) for c in chunks])
    assert np.array_equal(kept, np.arange(info.frame_count))
    assert [c.is_last for c in chunks] == [False] * (len(chunks) - 1) + [True]
    for c in chunks:
        assert c.start - c.warmup_start == min(warmup, c.start)


def test_auto_batch_size_keeps_workers_busy():
    assert auto_batch_size(230, 2) == 115  # one chunk per worker, none shorter than the floor
    assert auto_batch_size(90, 2) == 90  # shorter than the floor: one chunk
    assert auto_batch_size(3600, 2) == 900  # two chunks per worker
    assert auto_batch_size(1200, 2) == 300
    # A long video: chunks near the ceiling, and a multiple of the workers (no lone last chunk).
    size = auto_batch_size(27000, 2)
    chunks = -(-27000 // size)
    assert chunks % 2 == 0 and 1700 <= size <= 2000
    assert -(-27000 // auto_batch_size(27000, 3)) % 3 == 0
    # In a batch of 20 short clips each clip is one chunk: the other clips keep the workers busy.
    assert auto_batch_size(230, 2, batch_frames=20 * 230) == 230


def test_plan_cuts_a_variable_frame_rate_video_like_a_constant_rate_one(tmp_path, sample_video):
    """Exact seeks by timestamp make a variable-frame-rate video as good to cut as any: the same
    chunks, warm-ups, tails and handover starts as at a constant rate, each chunk taking its
    frames' times from the container."""
    import media

    info = probe_video(media.variable_frame_rate_sample(tmp_path, sample_video))
    assert info.variable_frame_rate and info.frame_count == 230 and info.fps == pytest.approx(20.0)
    specs = plan_chunks(info, 40, 8, handover_s=2.0)
    assert [(s.start, s.end) for s in specs] == [(0, 40), (40, 80), (80, 120), (120, 160), (160, 200), (200, 230)]
    assert [s.warmup_start for s in specs] == [0, 32, 72, 112, 152, 192]
    # 2 s at the average rate (20 fps) is 40 frames, and a tail ends at the video's end at the latest
    assert [s.tail_limit for s in specs] == [40, 40, 40, 40, 30, 0]
    assert [s.handover_start for s in specs[:-1]] == [s.warmup_start for s in specs[1:]]
    assert specs[-1].handover_start is None and [s.is_last for s in specs] == [False] * 5 + [True]
    assert all(s.variable_rate for s in specs)
    constant = plan_chunks(replace(info, variable_frame_rate=False), 40, 8, handover_s=2.0)
    assert specs == [replace(s, variable_rate=True) for s in constant]


def test_sampling_keeps_one_frame_per_period():
    kept = [i for i in range(300) if is_sampled(i, 30.0, 10.0)]
    assert kept == list(range(0, 300, 3))
    kept = [i for i in range(3000) if is_sampled(i, 29.97, 10.0)]
    assert len(kept) == pytest.approx(3000 * 10 / 29.97, abs=1)
    assert all(is_sampled(i, 30.0, None) for i in range(50))


@pytest.mark.parametrize("start", [0, 1, 47, 120, 229])
def test_seek_lands_on_exact_frame(sample_video, start):
    cap = cv2.VideoCapture(str(sample_video))
    reference = []
    while True:
        ok, frame = cap.read()
        if not ok:
            break
        reference.append(frame)
    cap.release()
    got = list(iter_frames(str(sample_video), start, start + 3))
    assert [i for i, _ in got] == list(range(start, min(start + 3, len(reference))))
    for index, frame in got:
        assert np.array_equal(frame, reference[index])
        assert frame.flags["C_CONTIGUOUS"]  # MediaPipe reads the buffer as packed rows
    rgb = list(iter_frames(str(sample_video), start, start + 1, pixel_format="rgb24"))
    assert np.array_equal(rgb[0][1], cv2.cvtColor(reference[start], cv2.COLOR_BGR2RGB))


def test_reader_to_end_of_stream(sample_video):
    indices = [i for i, _ in iter_frames(str(sample_video), 200, None, want=lambda i: i % 2 == 0)]
    assert indices == list(range(200, 230))


# -- damaged data: decoded past, the lost frames named ---------------------------------------------------------------


@pytest.fixture(scope="module")
def damaged(tmp_path_factory, sample_video):
    import media

    return str(media.damaged_packets(tmp_path_factory.mktemp("damaged"), sample_video))


def test_reader_decodes_past_damage_and_names_the_lost_frames(damaged):
    import media

    assert probe_video(damaged).frame_count == media.DAMAGED_FRAMES  # the container's index, not where decoding stops
    missing = []
    frames = list(iter_frames(damaged, 0, None, missing=missing))
    assert [i for i, _ in frames] == list(range(media.DAMAGED_FRAMES))  # every frame keeps its row, in order
    assert missing == list(media.UNDECODABLE_FRAMES)
    assert [i for i, f in frames if f is None] == missing
    # the old reader, OpenCV's grab(), took the first damaged packet for the end of the stream
    cap = cv2.VideoCapture(damaged)
    grabbed = 0
    while cap.grab():
        grabbed += 1
    assert grabbed < media.DAMAGED_FRAMES


@pytest.mark.parametrize(("start", "stop"), [(0, 20), (18, 23), (20, 60), (22, 25), (24, 30), (40, 60)])
def test_damage_is_the_same_whatever_the_range(damaged, start, stop):
    import media

    whole = dict(iter_frames(damaged, 0, None, missing=[]))
    missing = []
    part = list(iter_frames(damaged, start, stop, missing=missing))
    assert [i for i, _ in part] == list(range(start, stop))
    assert missing == [f for f in media.UNDECODABLE_FRAMES if start <= f < stop]
    for index, frame in part:
        assert (frame is None) == (whole[index] is None)
        if frame is not None:
            np.testing.assert_array_equal(frame, whole[index])


def test_reader_without_a_missing_list_fails_on_the_first_lost_frame(damaged):
    with pytest.raises(VideoError, match="frame 19 could not be decoded"):
        list(iter_frames(damaged, 10, 30))


def test_noise_over_the_sample_is_concealed_like_a_player(tmp_path, sample_video):
    import media

    noisy = str(media.random_bytes(tmp_path, sample_video))
    missing = []
    frames = list(iter_frames(noisy, 0, None, missing=missing, want=lambda i: i % 10 == 0))
    assert len(frames) == 230 and missing == []
    assert all(f is not None for i, f in frames if i % 10 == 0)


@pytest.mark.parametrize("start", [1, 29, 30, 31, 59])
def test_variable_frame_rate_seeks_by_timestamp(tmp_path, sample_video, start):
    """A seek lands on the exact frame even where the rate changes (OpenCV seeks by time x average rate)."""
    import media

    vfr = str(media.variable_frame_rate(tmp_path, sample_video))
    times = []
    whole = list(iter_frames(vfr, 0, None, times_ms=times))
    part_times = []
    part = list(iter_frames(vfr, start, start + 1, times_ms=part_times))
    assert part[0][0] == start
    np.testing.assert_array_equal(part[0][1], whole[start][1])
    assert part_times == [times[start]] == [pytest.approx(media.vfr_timestamps_s()[start] * 1000, abs=0.5)]


# -- the frame's own 4:2:0 planes (the annotated video draws on them) -------------------------------------------------


@pytest.fixture(scope="module")
def portrait(tmp_path_factory, sample_video):
    import media

    return str(media.portrait_rotated(tmp_path_factory.mktemp("portrait"), sample_video))


@pytest.mark.parametrize(
    ("clip", "frames", "shown_hw"), [("portrait", (0, 17, 39), (640, 360)), ("sample", (0, 120), (994, 1768))]
)
def test_i420_frames_are_the_bgr_frames_planes(request, sample_video, clip, frames, shown_hw):
    """The planes as a player shows them: the portrait clip's display matrix turns all three
    (stored 640x360, shown 360 wide), and each converts to the ``bgr24`` frame of the same index."""
    path = request.getfixturevalue("portrait") if clip == "portrait" else str(sample_video)
    height, width = shown_hw
    for index in frames:
        ((_, planes),) = list(iter_frames(path, index, index + 1, pixel_format="i420"))
        ((_, bgr),) = list(iter_frames(path, index, index + 1))
        assert bgr.shape == (height, width, 3)
        assert planes.shape == (height * 3 // 2, width) and planes.dtype == np.uint8
        assert planes.flags["C_CONTIGUOUS"]
        shown = cv2.cvtColor(planes, cv2.COLOR_YUV2BGR_I420)
        assert np.abs(shown.astype(int) - bgr).mean() < 3, index
        # chroma turned with the luma (a plane left as stored has the same size here, 180x320 = 320x180)
        _, u_ref, v_ref = i420_planes(cv2.cvtColor(bgr, cv2.COLOR_BGR2YUV_I420))
        _, u, v = i420_planes(planes)
        assert np.abs(u.astype(int) - u_ref).mean() < 1.5 and np.abs(v.astype(int) - v_ref).mean() < 1.5, index


def test_picture_format_of_the_sample_and_the_portrait_clip(sample_video, portrait):
    sample = picture_format(sample_video)
    assert (sample.pixel_format, sample.matrix, sample.full_range) == ("yuv420p", "bt709", False)
    assert (sample.colorspace, sample.primaries, sample.transfer) == ("bt709", "bt709", "bt709")
    assert sample.planar_420 and sample.i420_format == "yuv420p"
    # the cut keeps the sample's tags (ffmpeg passes them on)
    assert picture_format(portrait) == sample


def test_picture_format_of_full_range_and_untagged_video(tmp_path, sample_video):
    import media

    full = tmp_path / "full.mp4"
    media._from_sample(sample_video, full, 0, 2, "scale=320:180", codec=("-c:v", "libx264", "-pix_fmt", "yuvj420p"))
    found = picture_format(full)
    assert (found.pixel_format, found.full_range, found.i420_format) == ("yuvj420p", True, "yuvj420p")
    untagged = media._small_clip(sample_video, tmp_path / "untagged.mp4", 0, 2)  # from raw frames: no tags
    found = picture_format(untagged)
    assert (found.pixel_format, found.matrix, found.full_range) == ("yuv420p", "bt601", False)
    assert (found.colorspace, found.primaries, found.transfer) == (None, None, None)
    with pytest.raises(ValueError, match="i420"):
        list(iter_frames(str(sample_video), 0, 1, pixel_format="nv12"))
