"""Drawing on a frame's own 4:2:0 planes and the annotated video encoded from them, on the real
sample clip: the I420 drawing against the BGR one, the colour conversion, and render_segment's
output against its source (pixels far from the drawing, colour tags, frame count), for an even
size (the planes) and an odd one (the BGR path), at the input's size and scaled down
(``--video_height``)."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import av
import cv2
import numpy as np
import pytest

from pipeline.analysis.analyzer import Analyzer, TrackMeta
from pipeline.config import PipelineConfig
from pipeline.outputs.annotate import PALETTE, Annotator, BgrCanvas, YuvCanvas, ycbcr
from pipeline.outputs.render import RenderSpec, render_segment, scaled_size
from pipeline.video.plan import ChunkSpec
from pipeline.video.probe import probe_video
from pipeline.video.reader import i420_planes, iter_frames

FIRST, LAST = 60, 90  # sample frames analysed: the man on the box, fully in view
DRAWN_FRAME = 70
# (Kr, Kb) of the standard matrices, written out here rather than taken from the module under test.
LUMA_WEIGHTS = {"bt601": (0.299, 0.114), "bt709": (0.2126, 0.0722)}


@pytest.fixture(scope="module")
def analysed(sample_video, lite_model):
    """The Analysis of sample frames ``[FIRST, LAST)`` (one sequential chunk, two person slots)."""
    from pipeline.pose.backends.mediapipe import MediaPipeBackend, MediaPipeSettings
    from pipeline.pose.chunks import run_chunk

    info = probe_video(str(sample_video))
    spec = ChunkSpec(str(sample_video), 0, FIRST, LAST, FIRST, info.fps, None, False)
    backend = MediaPipeBackend(MediaPipeSettings(lite_model.path, lite_model.sha256, num_poses=2))
    track = run_chunk(backend, spec)
    analysis = Analyzer(PipelineConfig(quality="fast").resolved_analysis)(
        track, TrackMeta(info.width, info.height, info.fps)
    )
    assert np.isfinite(analysis.landmarks_px[:, 0, :, 0]).any(axis=1).all()  # the man is found in every frame
    return info, analysis


def one_frame(video, index: int, pixel_format: str) -> np.ndarray:
    ((got, frame),) = list(iter_frames(str(video), index, index + 1, pixel_format=pixel_format))
    assert got == index and frame is not None
    return frame


def bgr_from_i420(i420: np.ndarray, matrix: str, full_range: bool) -> np.ndarray:
    """The textbook inverse (chroma repeated over its 2x2 block), for any matrix; OpenCV's
    ``COLOR_YUV2BGR_I420`` knows BT.601 at video levels only."""
    height, width = i420.shape[0] * 2 // 3, i420.shape[1]
    flat = i420.reshape(-1).astype(np.float64)
    quarter = height * width // 4
    chroma = [
        flat[height * width + k * quarter : height * width + (k + 1) * quarter].reshape(height // 2, width // 2)
        for k in (0, 1)
    ]
    cb, cr = (np.repeat(np.repeat(c, 2, axis=0), 2, axis=1) for c in chroma)
    return np.round(ycbcr_to_bgr(i420[:height].astype(np.float64), cb, cr, matrix, full_range)).clip(0, 255)


def ycbcr_to_bgr(y, cb, cr, matrix: str, full_range: bool):
    kr, kb = LUMA_WEIGHTS[matrix]
    luma, chroma, offset = (255.0, 255.0, 0.0) if full_range else (219.0, 224.0, 16.0)
    e_y = (np.asarray(y, np.float64) - offset) / luma
    pb, pr = (np.asarray(cb, np.float64) - 128.0) / chroma, (np.asarray(cr, np.float64) - 128.0) / chroma
    r = e_y + 2.0 * (1.0 - kr) * pr
    b = e_y + 2.0 * (1.0 - kb) * pb
    g = (e_y - kr * r - kb * b) / (1.0 - kr - kb)
    return np.stack([b, g, r], axis=-1) * 255.0


def test_ycbcr_round_trips_every_palette_colour():
    colours = [*PALETTE, (255, 255, 255), (0, 0, 0), (40, 40, 40), (0, 215, 255)]
    for colour in colours:
        for matrix in LUMA_WEIGHTS:
            for full in (False, True):
                back = ycbcr_to_bgr(*ycbcr(colour, matrix, full), matrix, full)
                assert np.abs(back - colour).max() <= 2, (colour, matrix, full, back)
        # against OpenCV's own conversions: BT.601 at video levels (I420) and at full range (JPEG's YCrCb)
        y, cb, cr = ycbcr(colour, "bt601", False)
        i420 = np.array([[y, y], [y, y], [cb, cr]], np.uint8)
        assert np.abs(cv2.cvtColor(i420, cv2.COLOR_YUV2BGR_I420)[0, 0].astype(int) - colour).max() <= 2, colour
        y, cb, cr = ycbcr(colour, "bt601", True)
        jpeg = np.array([[[y, cr, cb]]], np.uint8)
        assert np.abs(cv2.cvtColor(jpeg, cv2.COLOR_YCrCb2BGR)[0, 0].astype(int) - colour).max() <= 2, colour
    # limited range keeps the footroom and headroom; the matrices differ where they should
    assert ycbcr((0, 0, 0), "bt709", False) == (16, 128, 128)
    assert ycbcr((255, 255, 255), "bt709", False) == (235, 128, 128)
    assert ycbcr((255, 255, 255), "bt601", True) == (255, 128, 128)
    assert ycbcr((0, 0, 255), "bt601") != ycbcr((0, 0, 255), "bt709")


def test_annotate_draws_on_a_copy(sample_video, analysed):
    info, analysis = analysed
    frame = one_frame(sample_video, DRAWN_FRAME, "bgr24")
    before = frame.copy()
    drawn = Annotator(fps=info.fps, frame_count=info.frame_count).annotate(frame, analysis, DRAWN_FRAME - FIRST)
    assert np.array_equal(frame, before)
    assert drawn.shape == frame.shape and drawn is not frame
    assert np.any(drawn != frame, axis=2).sum() > 5000  # skeleton, labels, the clock


def drawn_pair(video, analysis, info, matrix: str) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Frame DRAWN_FRAME as BGR and as I420, each before and after drawing the same row."""
    annotator = Annotator(fps=info.fps, frame_count=info.frame_count)
    bgr, i420 = one_frame(video, DRAWN_FRAME, "bgr24"), one_frame(video, DRAWN_FRAME, "i420")
    bgr_drawn, i420_drawn = bgr.copy(), i420.copy()
    annotator.draw(BgrCanvas(bgr_drawn), analysis, DRAWN_FRAME - FIRST)
    annotator.draw(YuvCanvas(i420_drawn, matrix, False), analysis, DRAWN_FRAME - FIRST)
    return bgr, bgr_drawn, i420, i420_drawn


@pytest.mark.parametrize("matrix", ["bt709", "bt601"])
def test_drawing_on_the_planes_matches_the_bgr_drawing(sample_video, analysed, matrix):
    """bt709 is the sample's own matrix (converted back by the textbook inverse); bt601 is converted
    back by OpenCV's ``COLOR_YUV2BGR_I420``."""
    info, analysis = analysed
    bgr, bgr_drawn, i420, i420_drawn = drawn_pair(sample_video, analysis, info, matrix)
    height = bgr.shape[0]
    changed = np.any(bgr_drawn != bgr, axis=2)
    assert changed.sum() > 5000
    near = cv2.dilate(changed.astype(np.uint8), np.ones((7, 7), np.uint8)).astype(bool)  # 3 px around
    # Away from the drawing every plane is untouched, to the byte.
    assert np.array_equal(i420_drawn[:height][~near], i420[:height][~near])
    near_chroma = near.reshape(height // 2, 2, -1, 2).any(axis=(1, 3))
    for before, after in zip(i420_planes(i420)[1:], i420_planes(i420_drawn)[1:]):  # U, V
        assert np.array_equal(after[~near_chroma], before[~near_chroma])
        assert np.any(after != before)  # the colours reach the chroma planes too

    if matrix == "bt601":
        shown = cv2.cvtColor(i420_drawn, cv2.COLOR_YUV2BGR_I420).astype(int)
    else:
        shown = bgr_from_i420(i420_drawn, matrix, full_range=False).astype(int)
    difference = np.abs(shown - bgr_drawn.astype(int)).max(axis=2)
    # Inside the strokes and boxes (not their anti-aliased edges, which 4:2:0 cannot hold), the same colours.
    inside = cv2.erode(changed.astype(np.uint8), np.ones((3, 3), np.uint8)).astype(bool)
    assert np.median(difference[inside]) <= 2
    # The person's colour (the skeleton, the "#0" box) is the saturated one: a misplaced or swapped
    # chroma plane shows there first (a median of 50 to 255 levels), and so does the wrong matrix (6 to 9).
    person = inside & np.all(bgr_drawn == PALETTE[0], axis=2)
    assert person.sum() > 1000
    assert np.median(difference[person]) <= 3
    assert np.percentile(difference[person], 75) <= 5


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return 10.0 * np.log10(255.0**2 / max(mse, 1e-12))


def decoded(path: Path) -> tuple[dict, list]:
    """The stream's colour facts and every frame (as PyAV frames' I420 arrays)."""
    with av.open(str(path)) as container:
        context = container.streams.video[0].codec_context
        frames = list(container.decode(video=0))
        first = frames[0]
        facts = {
            "codec": context.name,
            "size": (context.width, context.height),
            "pix_fmt": first.format.name,
            "colorspace": int(first.colorspace),
            "color_range": int(first.color_range),
            "color_primaries": int(first.color_primaries),
            "color_trc": int(first.color_trc),
        }
        arrays = [frame.to_ndarray() for frame in frames]
    return facts, arrays


def test_render_segment_on_the_planes_keeps_the_source_picture(tmp_path, sample_video, analysed):
    info, analysis = analysed
    start, stop = 64, 84
    annotator = Annotator(fps=info.fps, frame_count=info.frame_count)
    spec = RenderSpec(
        str(sample_video), 0, start, stop, str(tmp_path / "segment.mp4"), info.width, info.height, info.fps, 2
    )
    assert render_segment(spec, analysis.frames(start, stop), annotator) == stop - start

    facts, frames = decoded(Path(spec.segment_path))
    with av.open(str(sample_video)) as container:
        source = next(container.decode(video=0))
        tags = [int(source.colorspace), int(source.color_range), int(source.color_primaries), int(source.color_trc)]
    assert tags == [1, 1, 1, 1]  # BT.709 matrix, primaries and transfer, video levels
    assert facts == {
        "codec": "h264", "size": (info.width, info.height), "pix_fmt": "yuv420p",
        "colorspace": 1, "color_range": 1, "color_primaries": 1, "color_trc": 1,
    }  # fmt: skip
    assert len(frames) == stop - start

    for row, index in enumerate(range(start, stop)):
        if index % 5:
            continue
        source = one_frame(sample_video, index, "i420")
        bgr = one_frame(sample_video, index, "bgr24")
        drawn = annotator.annotate(bgr, analysis.frames(start, stop), row)
        changed = np.any(drawn != bgr, axis=2)
        far = ~cv2.dilate(changed.astype(np.uint8), np.ones((33, 33), np.uint8)).astype(bool)  # 16 px around
        assert far.mean() > 0.8
        far_chroma = far.reshape(info.height // 2, 2, -1, 2).all(axis=(1, 3))
        (y, u, v), (y0, u0, v0) = i420_planes(frames[row]), i420_planes(source)
        # Far from the drawing only the encoder's loss: the picture is neither converted nor shifted.
        assert psnr(y[far], y0[far]) > 33, index
        assert psnr(u[far_chroma], u0[far_chroma]) > 38, index
        assert psnr(v[far_chroma], v0[far_chroma]) > 38, index
        assert abs(float(y[far].mean()) - float(y0[far].mean())) < 0.75  # no change of levels (1.1-1.4 converted)
        # The drawing is there, in its colours (the BGR drawing's, through the source's own matrix).
        inside = cv2.erode(changed.astype(np.uint8), np.ones((5, 5), np.uint8)).astype(bool)
        shown = bgr_from_i420(frames[row], "bt709", full_range=False)
        assert np.median(np.abs(shown[inside] - drawn[inside]).max(axis=1)) <= 8, index  # ~100 undrawn


def test_render_segment_of_an_odd_size_goes_through_bgr(tmp_path, sample_video, analysed):
    """``odd_size`` is sample frames 60-89 scaled to 333x211: the analysis, scaled alike, fits it."""
    import media

    info, analysis = analysed
    clip = media.odd_size(tmp_path / "clip", sample_video)
    small = probe_video(str(clip))
    assert (small.width, small.height, small.frame_count) == (333, 211, LAST - FIRST)
    scale = np.array([small.width / info.width, small.height / info.height], np.float32)
    view = replace(analysis, landmarks_px=analysis.landmarks_px * scale, com_px=analysis.com_px * scale)
    annotator = Annotator(fps=small.fps, frame_count=small.frame_count)
    spec = RenderSpec(str(clip), 0, 0, small.frame_count, str(tmp_path / "odd.mp4"), 333, 211, small.fps, 1)
    assert render_segment(spec, view, annotator) == small.frame_count

    with av.open(spec.segment_path) as container:
        context = container.streams.video[0].codec_context
        assert (context.name, context.pix_fmt, context.width, context.height) == ("h264", "yuv420p", 334, 212)
        pictures = [frame.to_ndarray(format="bgr24") for frame in container.decode(video=0)]
    assert len(pictures) == small.frame_count
    row = DRAWN_FRAME - FIRST
    bgr = one_frame(clip, row, "bgr24")
    drawn = annotator.annotate(bgr, view, row)
    changed = np.any(drawn != bgr, axis=2)
    far = ~cv2.dilate(changed.astype(np.uint8), np.ones((9, 9), np.uint8)).astype(bool)
    picture = pictures[row][:211, :333]
    assert psnr(picture[far], bgr[far]) > 30
    assert psnr(picture[changed], drawn[changed]) > psnr(picture[changed], bgr[changed]) + 6  # drawn, not bare


@pytest.mark.parametrize(
    "size, video_height, expected",
    [
        ((1768, 994), None, (1768, 994)),  # the default: the input's size
        ((1768, 994), 994, (1768, 994)),
        ((1768, 994), 2160, (1768, 994)),  # never up
        ((1768, 994), 360, (640, 360)),  # 640.3 wide
        ((1768, 994), 721, (1280, 720)),  # both even (1280.6 wide)
        ((1080, 1920), 720, (404, 720)),  # portrait: 405 wide, to even
        ((333, 211), 120, (190, 120)),  # an odd input scaled to an even size
    ],
)
def test_scaled_size_keeps_the_aspect_ratio_in_even_sizes(size, video_height, expected):
    assert scaled_size(*size, video_height) == expected


def test_render_segment_scaled_down_draws_at_the_scaled_landmarks(tmp_path, sample_video, analysed):
    """``--video_height 360``: every frame is scaled to 640x360 on its planes, then drawn with the
    landmarks scaled alike; the result matches the BGR drawing on the source frame scaled down."""
    info, analysis = analysed
    start, stop = 64, 84
    size = scaled_size(info.width, info.height, 360)
    annotator = Annotator(fps=info.fps, frame_count=info.frame_count)
    spec = RenderSpec(
        str(sample_video), 0, start, stop, str(tmp_path / "small.mp4"), info.width, info.height, info.fps, 2, size
    )
    view = analysis.frames(start, stop)
    assert render_segment(spec, view, annotator) == stop - start

    facts, frames = decoded(Path(spec.segment_path))
    assert (facts["size"], facts["pix_fmt"], facts["colorspace"], facts["color_range"]) == (size, "yuv420p", 1, 1)
    assert len(frames) == stop - start
    scale = np.array([size[0] / info.width, size[1] / info.height], np.float32)
    small_view = replace(view, landmarks_px=view.landmarks_px * scale, com_px=view.com_px * scale)
    for row in (0, DRAWN_FRAME - start, stop - start - 1):
        bgr = cv2.resize(one_frame(sample_video, start + row, "bgr24"), size, interpolation=cv2.INTER_AREA)
        drawn = annotator.annotate(bgr, small_view, row)
        changed = np.any(drawn != bgr, axis=2)
        assert changed.mean() > 0.01  # the man, his angles and the clock are drawn
        far = ~cv2.dilate(changed.astype(np.uint8), np.ones((9, 9), np.uint8)).astype(bool)
        shown = np.clip(bgr_from_i420(frames[row], "bt709", full_range=False), 0, 255)
        assert psnr(shown[far], bgr[far]) > 28, row  # the picture, scaled down, not shifted
        # The drawing is where the scaled landmarks are: much nearer the BGR drawing than the bare frame.
        assert psnr(shown[changed], drawn[changed]) > psnr(shown[changed], bgr[changed]) + 6, row


def test_render_segment_of_an_odd_size_scaled_down(tmp_path, sample_video, analysed):
    """An odd input (the BGR path) scaled to an even size: no padding, every frame."""
    import media

    info, analysis = analysed
    clip = media.odd_size(tmp_path / "clip", sample_video)
    small = probe_video(str(clip))
    size = scaled_size(small.width, small.height, 120)
    scale = np.array([small.width / info.width, small.height / info.height], np.float32)
    view = replace(analysis, landmarks_px=analysis.landmarks_px * scale, com_px=analysis.com_px * scale)
    annotator = Annotator(fps=small.fps, frame_count=small.frame_count)
    spec = RenderSpec(str(clip), 0, 0, small.frame_count, str(tmp_path / "odd.mp4"), 333, 211, small.fps, 1, size)
    assert render_segment(spec, view, annotator) == small.frame_count
    with av.open(spec.segment_path) as container:
        context = container.streams.video[0].codec_context
        assert (context.width, context.height) == (190, 120)
        assert sum(1 for _ in container.decode(video=0)) == small.frame_count
