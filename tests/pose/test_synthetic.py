"""Checks on the synthetic clips themselves: file properties, the pasted patch
sitting exactly where the truth says, and the pose model following the motion."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
from conftest import sequential_landmarks
from synthetic import (
    FOOT_LANDMARKS,
    PATCH_BOX,
    PATCH_FRAME,
    JumpTruth,
    RepetitionTruth,
    canvas_colour,
    make_jump_clip,
    make_repetition_clip,
    measure_patch,
    person_patch,
)

from pipeline.video import iter_frames

HIPS = (23, 24)


@pytest.fixture(scope="module")
def jump_clip(tmp_path_factory, sample_video, lite_model):
    path = tmp_path_factory.mktemp("synthetic") / "jump.mp4"
    return path, make_jump_clip(path, sample_video, model_path=lite_model.path)


@pytest.fixture(scope="module")
def repetition_clip(tmp_path_factory, sample_video, lite_model):
    path = tmp_path_factory.mktemp("synthetic") / "repetition.mp4"
    return path, make_repetition_clip(path, sample_video, model_path=lite_model.path)


@pytest.fixture(scope="module")
def jump_landmarks(jump_clip, lite_model):
    landmarks, _ = sequential_landmarks(jump_clip[0], lite_model.path)
    return landmarks[:, 0]


@pytest.fixture(scope="module")
def repetition_landmarks(repetition_clip, lite_model):
    landmarks, _ = sequential_landmarks(repetition_clip[0], lite_model.path)
    return landmarks[:, 0]


def decode(path) -> tuple[list[np.ndarray], float, int, int, int]:
    """All frames, fps, container frame count, width, height."""
    cap = cv2.VideoCapture(str(path))
    fps = cap.get(cv2.CAP_PROP_FPS)
    count = int(cap.get(cv2.CAP_PROP_FRAME_COUNT))
    width = int(cap.get(cv2.CAP_PROP_FRAME_WIDTH))
    height = int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT))
    cap.release()
    frames = [frame for _, frame in iter_frames(str(path), 0, None)]
    return frames, fps, count, width, height


def locate(frame: np.ndarray, template: np.ndarray, top: int, left: int, radius: int = 6) -> tuple[int, int]:
    """Row and column of the best match of ``template`` within ``radius`` px of ``(top, left)``."""
    h, w = template.shape[:2]
    y0, x0 = max(0, top - radius), max(0, left - radius)
    window = frame[y0 : top + h + radius, x0 : left + w + radius]
    scores = cv2.matchTemplate(window, template, cv2.TM_SQDIFF)
    _, _, (dx, dy), _ = cv2.minMaxLoc(scores)
    return y0 + dy, x0 + dx


def check_patch_positions(path, patch, frame_count, fps, size, corners) -> None:
    """The decoded file has the expected length, rate and size, and frame ``f``
    holds ``patch`` at exactly ``corners[f] = (top, left)`` on the plain canvas."""
    frames, got_fps, count, width, height = decode(path)
    assert len(frames) == count == frame_count
    assert got_fps == pytest.approx(fps)
    assert (width, height) == size
    ph, pw = patch.shape[:2]
    top, left = corners[0]
    template = frames[0][top : top + ph, left : left + pw]
    assert np.abs(template.astype(int) - patch.astype(int)).mean() < 3
    fill = np.array(canvas_colour(patch))
    for index, (frame, (top, left)) in enumerate(zip(frames, corners)):
        assert locate(frame, template, top, left) == (top, left), f"frame {index}"
        pasted = frame[top : top + ph, left : left + pw]
        assert np.abs(pasted.astype(int) - template.astype(int)).mean() < 1.5, f"frame {index}"
        assert np.abs(frame[[0, 0, -1, -1], [0, -1, 0, -1]].astype(int) - fill).max() <= 3, f"frame {index}"


def lag_envelope_error(measured: np.ndarray, truth: np.ndarray) -> np.ndarray:
    """Distance of ``measured[f]`` from the interval spanned by ``truth[f - 1]`` and
    ``truth[f]``: zero for a tracker at most one frame behind the motion."""
    previous = np.r_[truth[:1], truth[:-1]]
    low, high = np.minimum(previous, truth), np.maximum(previous, truth)
    return np.where(measured < low, low - measured, np.where(measured > high, measured - high, 0.0))


def settled(offsets, settle: int = 5) -> np.ndarray:
    """Frames at rest whose previous ``settle`` frames are at rest as well."""
    moving = np.asarray(offsets) != 0
    return np.array([not moving[max(0, f - settle) : f + 1].any() for f in range(len(moving))])


def test_person_patch(sample_video, lite_model):
    patch, foot_row = person_patch(sample_video, lite_model.path)
    measured = measure_patch(sample_video, lite_model.path)
    x0, y0, x1, y1 = PATCH_BOX
    assert measured.frame_index == PATCH_FRAME
    assert patch.shape == (y1 - y0, x1 - x0, 3) and patch.dtype == np.uint8
    assert not patch.flags.writeable
    assert foot_row == measured.foot_row
    assert 0.8 * patch.shape[0] < foot_row < patch.shape[0] - 20
    assert 20 < measured.head_row < 0.2 * patch.shape[0]
    assert 300 < measured.body_height_px < 420
    assert measured.px_per_m == pytest.approx(measured.body_height_px / 1.75)


def test_jump_truth(jump_clip):
    _, truth = jump_clip
    assert isinstance(truth, JumpTruth)
    assert truth.frame_count == 117 and truth.fps == 30.0
    assert (truth.width, truth.height) == (720, 1280)
    assert [(j.takeoff_frame, j.landing_frame) for j in truth.jumps] == [(30, 45), (75, 87)]
    assert [j.flight_time_s for j in truth.jumps] == pytest.approx([0.5, 0.4])
    assert [j.jump_height_m for j in truth.jumps] == pytest.approx([9.81 * 0.5**2 / 8, 9.81 * 0.4**2 / 8])
    assert [j.takeoff_velocity_mps for j in truth.jumps] == pytest.approx([9.81 * 0.5 / 2, 9.81 * 0.4 / 2])
    heights = np.array(truth.height_m)
    airborne = np.zeros(truth.frame_count, bool)
    for jump in truth.jumps:
        assert heights[jump.takeoff_frame] == 0 and heights[jump.landing_frame] == 0
        assert jump.landing_frame - jump.takeoff_frame == round(jump.flight_time_s * truth.fps)
        airborne[jump.takeoff_frame + 1 : jump.landing_frame] = True
        assert jump.jump_height_m * 0.98 < heights[jump.takeoff_frame : jump.landing_frame].max() <= jump.jump_height_m
    assert (heights[airborne] > 0).all() and (heights[~airborne] == 0).all()
    assert (np.array(truth.offset_px)[~airborne] == 0).all()
    assert truth.max_rounding_px < 0.5
    assert truth.ground_row == pytest.approx(0.75 * truth.height, abs=0.5)


def test_jump_file(jump_clip, sample_video, lite_model):
    path, truth = jump_clip
    patch, _ = person_patch(sample_video, lite_model.path)
    corners = [(truth.rest_top - offset, truth.left) for offset in truth.offset_px]
    check_patch_positions(path, patch, truth.frame_count, truth.fps, (truth.width, truth.height), corners)


def test_jump_tracked(jump_clip, jump_landmarks):
    """The lowest foot landmark rises by ``offset_px`` in every frame: exactly
    at rest, and at most one frame behind the motion in the air."""
    _, truth = jump_clip
    assert not np.isnan(jump_landmarks[:, :, :2]).any()
    foot_y = jump_landmarks[:, list(FOOT_LANDMARKS), 1].max(axis=1) * truth.height
    rest_y = np.median(foot_y[: truth.jumps[0].takeoff_frame + 1])
    assert rest_y == pytest.approx(truth.ground_row, abs=8)
    rise = rest_y - foot_y
    offsets = np.array(truth.offset_px, float)
    error = np.abs(rise - offsets)
    still = settled(offsets)
    envelope = lag_envelope_error(rise, offsets)
    print(
        f"jump foot y: max error {error.max():.2f} px, at rest {error[still].max():.2f} px, "
        f"beyond one frame of lag {envelope.max():.2f} px"
    )
    assert error[still].max() <= 3
    assert envelope.max() <= 5
    assert error.max() <= 15


def test_repetition_truth(repetition_clip):
    _, truth = repetition_clip
    assert isinstance(truth, RepetitionTruth)
    assert truth.n == 5 and truth.period_frames == 30 and truth.period_s == pytest.approx(1.0)
    assert truth.frame_count == 30 + 5 * 30 + 31
    assert truth.cycle_start_frames == (30, 60, 90, 120, 150)
    assert truth.peak_frames == (45, 75, 105, 135, 165)
    assert truth.amplitude_px == pytest.approx(0.5 * truth.body_height_px)
    exact = np.array(truth.offset_exact_px)
    assert exact[list(truth.peak_frames)] == pytest.approx(truth.amplitude_px)
    assert exact[list(truth.cycle_start_frames)] == pytest.approx(0)
    assert exact.max() == pytest.approx(truth.amplitude_px)
    assert (exact[: truth.cycle_start_frames[0]] == 0).all()
    assert (exact[truth.cycle_start_frames[-1] + truth.period_frames :] == 0).all()
    assert truth.max_rounding_px < 0.5
    assert truth.ground_row == pytest.approx(0.75 * truth.height, abs=0.5)


def test_repetition_file(repetition_clip, sample_video, lite_model):
    path, truth = repetition_clip
    patch, _ = person_patch(sample_video, lite_model.path)
    corners = [(truth.top, truth.rest_left + offset) for offset in truth.offset_px]
    check_patch_positions(path, patch, truth.frame_count, truth.fps, (truth.width, truth.height), corners)


def test_repetition_tracked(repetition_clip, repetition_landmarks):
    """The hip midpoint moves right by ``offset_px`` in every frame (at most one
    frame behind the motion) while the feet stay on the ground row."""
    _, truth = repetition_clip
    assert not np.isnan(repetition_landmarks[:, :, :2]).any()
    hip_x = repetition_landmarks[:, list(HIPS), 0].mean(axis=1) * truth.width
    shift = hip_x - np.median(hip_x[: truth.cycle_start_frames[0] + 1])
    offsets = np.array(truth.offset_px, float)
    error = np.abs(shift - offsets)
    still = settled(offsets)
    envelope = lag_envelope_error(shift, offsets)
    foot_y = repetition_landmarks[:, list(FOOT_LANDMARKS), 1].max(axis=1) * truth.height
    foot_drift = np.abs(foot_y - np.median(foot_y))
    print(
        f"repetition hip x: max error {error.max():.2f} px, at rest {error[still].max():.2f} px, "
        f"beyond one frame of lag {envelope.max():.2f} px; foot y drift {foot_drift.max():.2f} px"
    )
    assert error[still].max() <= 3
    assert envelope.max() <= 4
    assert error.max() <= 20
    assert foot_drift.max() <= 5
    peaks = [int(np.argmax(shift[s : s + truth.period_frames])) + s for s in truth.cycle_start_frames]
    assert all(abs(p - q) <= 2 for p, q in zip(peaks, truth.peak_frames))


def test_builders_deterministic(tmp_path, sample_video, lite_model):
    for name in ("a", "b"):
        make_jump_clip(
            tmp_path / f"jump_{name}.mp4", sample_video, flight_times_s=(0.2,), rest_s=0.2, model_path=lite_model.path
        )
        make_repetition_clip(
            tmp_path / f"rep_{name}.mp4", sample_video, n=1, period_s=0.4, rest_s=0.2, model_path=lite_model.path
        )
    for kind in ("jump", "rep"):
        a, b = decode(tmp_path / f"{kind}_a.mp4")[0], decode(tmp_path / f"{kind}_b.mp4")[0]
        assert len(a) == len(b) > 0
        assert all(np.array_equal(x, y) for x, y in zip(a, b))


@pytest.mark.parametrize(
    ("builder", "kwargs"),
    [
        (make_jump_clip, {"flight_times_s": (0.51,)}),
        (make_jump_clip, {"rest_s": 0.01}),
        (make_repetition_clip, {"period_s": 0.9}),
        (make_repetition_clip, {"n": 0}),
    ],
)
def test_builders_reject_off_grid_timing(tmp_path, sample_video, lite_model, builder, kwargs):
    with pytest.raises(ValueError):
        builder(tmp_path / "clip.mp4", sample_video, model_path=lite_model.path, **kwargs)
