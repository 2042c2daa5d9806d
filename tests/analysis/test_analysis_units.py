"""Unit tests of the pure-numpy analysis modules on synthetic data with known answers.

Kinematics, filters, body segments, events, the analyzer on a synthetic
``PoseChunk`` and the plausibility flags of the summary. No video, no model:
every input is built here from an exact formula.
"""

from __future__ import annotations

import numpy as np
import pytest
from numpy.testing import assert_allclose, assert_array_equal

from pipeline.analysis import filters
from pipeline.analysis.analyzer import AnalysisParams, Analyzer, TrackMeta
from pipeline.analysis.body import (
    CHAIN_FRACTION_OF_HEIGHT,
    SEGMENT_NAMES,
    SEGMENTS,
    VELOCITY_POINTS,
    body_height,
    centre_of_mass,
    lowest_foot_y,
    segment_centres,
)
from pipeline.analysis.events import (
    EventParams,
    Flight,
    G,
    count_repetitions,
    detect_flights,
    ground_contacts,
)
from pipeline.analysis.kinematics import angle_at, joint_angles
from pipeline.analysis.summary import PersonSeries
from pipeline.analysis.tracking import link_identities
from pipeline.pose.skeleton import ANGLE_NAMES, LANDMARK, NUM_LANDMARKS
from pipeline.pose.types import PoseChunk

FPS = 30.0
PARAMS = EventParams()

# --------------------------------------------------------------------------------------
# Synthetic skeletons
# --------------------------------------------------------------------------------------

# Heights of the landmarks above the floor as fractions of stature (Drillis & Contini),
# and their lateral offset (fraction of stature, left positive). Symmetric left/right.
_UPRIGHT = {
    "nose": (0.918, 0.0),
    "left_eye_inner": (0.935, 0.012),
    "left_eye": (0.935, 0.022),
    "left_eye_outer": (0.935, 0.032),
    "right_eye_inner": (0.935, -0.012),
    "right_eye": (0.935, -0.022),
    "right_eye_outer": (0.935, -0.032),
    "left_ear": (0.925, 0.045),
    "right_ear": (0.925, -0.045),
    "mouth_left": (0.895, 0.015),
    "mouth_right": (0.895, -0.015),
    "left_shoulder": (0.818, 0.1295),
    "right_shoulder": (0.818, -0.1295),
    "left_elbow": (0.630, 0.15),
    "right_elbow": (0.630, -0.15),
    "left_wrist": (0.485, 0.16),
    "right_wrist": (0.485, -0.16),
    "left_pinky": (0.41, 0.17),
    "right_pinky": (0.41, -0.17),
    "left_index": (0.40, 0.165),
    "right_index": (0.40, -0.165),
    "left_thumb": (0.42, 0.15),
    "right_thumb": (0.42, -0.15),
    "left_hip": (0.530, 0.095),
    "right_hip": (0.530, -0.095),
    "left_knee": (0.285, 0.095),
    "right_knee": (0.285, -0.095),
    "left_ankle": (0.039, 0.095),
    "right_ankle": (0.039, -0.095),
    "left_heel": (0.0, 0.095),
    "right_heel": (0.0, -0.095),
    "left_foot_index": (0.0, 0.11),
    "right_foot_index": (0.0, -0.11),
}
assert len(_UPRIGHT) == NUM_LANDMARKS


def upright(stature: float) -> np.ndarray:
    """``[33, 3]`` upright skeleton, y up from the floor, x lateral, z = 0, in the unit of ``stature``."""
    points = np.zeros((NUM_LANDMARKS, 3))
    for name, (up, side) in _UPRIGHT.items():
        points[LANDMARK[name]] = [side * stature, up * stature, 0.0]
    return points


def upright_px(stature_px: float, centre_x: float, floor_y: float) -> np.ndarray:
    """``[33, 2]`` image pixels (y down) of the upright skeleton standing on row ``floor_y``."""
    points = upright(stature_px)
    return np.stack([centre_x + points[:, 0], floor_y - points[:, 1]], axis=-1)


def make_chunk(px: np.ndarray, width: int, height: int, fps: float = FPS, visibility: float = 0.9) -> PoseChunk:
    """A one-slot ``PoseChunk`` from pixel landmarks ``[F, 33, 2]`` (NaN rows = not detected).

    World landmarks are the upright skeleton in metres, origin between the hips,
    y down as MediaPipe's; they do not move (the person translates rigidly).
    """
    frames = px.shape[0]
    chunk = PoseChunk.empty(0, frames, 1, fps)
    image = np.zeros((frames, 1, NUM_LANDMARKS, 4), np.float32)
    image[:, 0, :, 0] = px[..., 0] / width
    image[:, 0, :, 1] = px[..., 1] / height
    image[:, 0, :, 2] = 0.0
    image[:, 0, :, 3] = visibility
    world = upright(1.75)
    world = world - world[[LANDMARK["left_hip"], LANDMARK["right_hip"]]].mean(axis=0)
    world[:, 1] *= -1
    # Bend knees and elbows slightly so that no angle sits at the degenerate 180 degrees.
    for side in ("left", "right"):
        world[LANDMARK[f"{side}_knee"], 2] -= 0.03
        world[LANDMARK[f"{side}_elbow"], 2] -= 0.03
        world[LANDMARK[f"{side}_foot_index"], 2] -= 0.15
    world_xyz = np.broadcast_to(world.astype(np.float32), (frames, 1, NUM_LANDMARKS, 3)).copy()
    presence = np.full((frames, 1, NUM_LANDMARKS), visibility, np.float32)
    gone = np.isnan(px[:, 0, 0])
    image[gone] = np.nan
    world_xyz[gone] = np.nan
    presence[gone] = np.nan
    return PoseChunk(
        frame_index=chunk.frame_index,
        timestamp_ms=chunk.timestamp_ms,
        sampled=chunk.sampled,
        image_xyzv=image,
        world_xyz=world_xyz,
        presence=presence,
    )


def ballistic_offsets(frames: int, fps: float, flights: list[tuple[int, int]], rise: float) -> np.ndarray:
    """Upward offset per frame: 0 on the ground, a parabola of apex ``rise`` between
    each ``(takeoff, landing)`` frame pair (0 at both, exactly)."""
    t = np.arange(frames) / fps
    out = np.zeros(frames)
    for takeoff, landing in flights:
        t0, t1 = takeoff / fps, landing / fps
        inside = slice(takeoff, landing + 1)
        span = t1 - t0
        out[inside] = 4 * rise * (t[inside] - t0) * (t1 - t[inside]) / span**2
    return out


# --------------------------------------------------------------------------------------
# kinematics
# --------------------------------------------------------------------------------------


def test_angle_at_broadcasts_over_time_and_tracks_a_known_rotation():
    theta = np.linspace(5.0, 175.0, 35)
    rad = np.radians(theta)
    b = np.array([2.0, -1.0])
    a = np.broadcast_to(b + [3.0, 0.0], (35, 2))
    c = b + 0.5 * np.stack([np.cos(rad), np.sin(rad)], axis=-1)
    got = angle_at(a, b, c)
    assert got.shape == (35,)
    assert_allclose(got, theta, atol=1e-9)


def test_angle_at_is_symmetric_and_invariant_to_translation_scale_and_dimension():
    rng = np.random.default_rng(1)
    a, b, c = rng.normal(size=(3, 20, 2))
    ref = angle_at(a, b, c)
    assert_allclose(angle_at(c, b, a), ref, atol=1e-9)
    shift = np.array([7.0, -3.0])
    assert_allclose(angle_at(4 * a + shift, 4 * b + shift, 4 * c + shift), ref, atol=1e-7)
    pad = np.zeros((20, 1))
    a3, b3, c3 = (np.concatenate([p, pad], axis=-1) for p in (a, b, c))
    assert_allclose(angle_at(a3, b3, c3), ref, atol=1e-9)
    assert ((ref >= 0) & (ref <= 180)).all()


def test_angle_at_nan_input_gives_nan():
    got = angle_at(np.array([[1.0, 0.0], [np.nan, 0.0]]), np.zeros(2), np.array([0.0, 1.0]))
    assert got[0] == pytest.approx(90.0)
    assert np.isnan(got[1])


def test_joint_angles_of_a_flexing_knee_series():
    frames = 25
    flexion = np.linspace(0.0, 120.0, frames)  # knee angle = 180 - flexion
    points = np.repeat(upright(1.75)[None], frames, axis=0)
    knee = points[:, LANDMARK["left_knee"]]
    shank = np.linalg.norm(upright(1.75)[LANDMARK["left_ankle"]] - upright(1.75)[LANDMARK["left_knee"]])
    rad = np.radians(flexion)
    # The shank rotates backwards (in the y-z plane) about the knee.
    points[:, LANDMARK["left_ankle"]] = knee + shank * np.stack([np.zeros(frames), -np.cos(rad), -np.sin(rad)], -1)
    angles = joint_angles(points)
    assert angles.shape == (frames, len(ANGLE_NAMES))
    assert angles.dtype == np.float32
    assert_allclose(angles[:, ANGLE_NAMES.index("left_knee")], 180.0 - flexion, atol=1e-3)
    assert_allclose(angles[:, ANGLE_NAMES.index("right_knee")], 180.0, atol=1e-3)


def test_joint_angles_arm_raised_sideways_is_90_at_the_shoulder():
    points = upright(1.75)
    shoulder = points[LANDMARK["right_shoulder"]]
    points[LANDMARK["right_elbow"]] = shoulder + [-0.3, 0.0, 0.0]
    points[LANDMARK["right_wrist"]] = shoulder + [-0.3, 0.25, 0.0]  # forearm pointing up
    # The trunk side is vertical: hip straight below the shoulder.
    points[LANDMARK["right_hip"]] = [shoulder[0], points[LANDMARK["right_hip"], 1], 0.0]
    angles = joint_angles(points)
    assert angles[ANGLE_NAMES.index("right_shoulder")] == pytest.approx(90.0, abs=1e-4)
    assert angles[ANGLE_NAMES.index("right_elbow")] == pytest.approx(90.0, abs=1e-4)


def test_joint_angles_visibility_threshold_zero_ignores_visibility():
    points = np.repeat(upright(1.75)[None], 3, axis=0)
    points[..., 2] += np.linspace(0, 0.1, NUM_LANDMARKS)  # every angle well defined and finite
    visibility = np.zeros((3, NUM_LANDMARKS))
    assert np.isfinite(joint_angles(points, visibility, min_visibility=0.0)).all()
    masked = joint_angles(points, visibility, min_visibility=0.5)
    assert np.isnan(masked).all()
    # A NaN visibility is not "visible enough".
    visibility = np.ones((3, NUM_LANDMARKS))
    visibility[1, LANDMARK["left_knee"]] = np.nan
    masked = joint_angles(points, visibility, min_visibility=0.5)
    for name in ("left_hip", "left_knee", "left_ankle"):
        assert np.isnan(masked[1, ANGLE_NAMES.index(name)])
    assert np.isfinite(masked[[0, 2]]).all()
    assert np.isfinite(masked[1, ANGLE_NAMES.index("right_knee")])


# --------------------------------------------------------------------------------------
# filters
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("mask", "expected"),
    [
        ([], []),
        ([False, False], []),
        ([True, True, True], [(0, 3)]),
        ([True, False, True, True, False], [(0, 1), (2, 4)]),
        ([False, True, True, False, False, True], [(1, 3), (5, 6)]),
    ],
)
def test_runs(mask, expected):
    assert filters.runs(np.array(mask, dtype=bool)) == expected


def test_fill_gaps_interpolates_short_interior_gaps_exactly():
    x = 3.0 * np.arange(20) - 7.0  # linear: interpolation is exact
    values = x.copy()
    values[[0, 1]] = np.nan  # leading edge: stays NaN
    values[[4, 5, 6]] = np.nan  # interior, 3 long: filled with max_gap=3
    values[[9]] = np.nan  # interior, 1 long: filled
    values[12:16] = np.nan  # interior, 4 long: too long
    values[19] = np.nan  # trailing edge: stays NaN
    original = values.copy()
    out, filled = filters.fill_gaps(values, max_gap=3)
    assert_array_equal(np.isnan(values), np.isnan(original))  # input untouched
    expect_filled = np.zeros(20, bool)
    expect_filled[[4, 5, 6, 9]] = True
    assert_array_equal(filled, expect_filled)
    assert_allclose(out[expect_filled], x[expect_filled], rtol=0, atol=1e-12)
    assert np.isnan(out[[0, 1, 12, 13, 14, 15, 19]]).all()
    keep = ~np.isnan(original)
    assert_array_equal(out[keep], original[keep])


def test_fill_gaps_columns_are_independent_and_shape_is_kept():
    t = np.arange(10, dtype=float)
    values = np.stack([t, 10 * t, -t], axis=-1).reshape(10, 3, 1)
    values[3:5, 0, 0] = np.nan  # gap of 2
    values[2:8, 1, 0] = np.nan  # gap of 6
    out, filled = filters.fill_gaps(values, max_gap=2)
    assert out.shape == filled.shape == (10, 3, 1)
    assert_allclose(out[3:5, 0, 0], [3.0, 4.0])
    assert filled[3:5, 0, 0].all()
    assert np.isnan(out[2:8, 1, 0]).all()
    assert not filled[:, 1:].any()
    assert filled.sum() == 2


def test_fill_gaps_disabled_with_max_gap_zero():
    values = np.array([1.0, np.nan, 3.0])
    out, filled = filters.fill_gaps(values, max_gap=0)
    assert np.isnan(out[1])
    assert not filled.any()


def _gappy_series(seed: int, frames: int, columns: int) -> np.ndarray:
    """Random walks with NaN samples, NaN frames, an all-NaN column, and blocks spanning several ``COLUMNS_PER_BLOCK``."""
    rng = np.random.default_rng(seed)
    values = np.cumsum(rng.normal(0.0, 5.0, (frames, columns)), axis=0) + 300.0
    values[rng.random((frames, columns)) < 0.2] = np.nan
    values[rng.random(frames) < 0.1] = np.nan
    values[:, 3] = np.nan
    return values


@pytest.mark.parametrize("max_gap", [1, 4])
def test_fill_gaps_is_np_interp_between_the_gap_ends_bit_for_bit(max_gap):
    values = _gappy_series(5, 400, 70)
    expected, expected_filled = values.copy(), np.zeros(values.shape, dtype=bool)
    for j in range(values.shape[1]):  # the reference: one gap at a time
        for start, stop in filters.runs(np.isnan(values[:, j])):
            if start == 0 or stop == len(values) or stop - start > max_gap:
                continue
            ends = [values[start - 1, j], values[stop, j]]
            expected[start:stop, j] = np.interp(np.arange(start, stop), [start - 1, stop], ends)
            expected_filled[start:stop, j] = True
    out, filled = filters.fill_gaps(values, max_gap)
    assert_array_equal(out.view(np.int64), expected.view(np.int64))
    assert_array_equal(filled, expected_filled)


def test_hampel_mask_equals_the_rule_applied_one_series_at_a_time():
    values = _gappy_series(6, 5000, 5)  # rows over several blocks
    values[100, 1] = 1e5
    window, threshold, floor = 7, 3.5, 1.0
    flat = filters._nearest_fill(values)
    expected = np.zeros(values.shape, dtype=bool)
    for j in range(values.shape[1]):  # the reference: one series at a time
        windows = np.lib.stride_tricks.sliding_window_view(np.pad(flat[:, j], window // 2, mode="edge"), window)
        median = np.median(windows, axis=1)
        mad = np.median(np.abs(windows - median[:, None]), axis=1)
        limit = np.maximum(threshold * filters.MAD_TO_SIGMA * mad, floor)
        expected[:, j] = (np.abs(flat[:, j] - median) > limit) & ~np.isnan(values[:, j])
    mask = filters.hampel_mask(values, window, threshold, floor)
    assert mask[100, 1]
    assert_array_equal(mask, expected)


def test_hampel_flags_a_single_spike_on_a_linear_series():
    values = 2.0 * np.arange(40)
    values[17] += 50.0
    mask = filters.hampel_mask(values, window=7, threshold=3.5, floor=1.0)
    assert_array_equal(np.flatnonzero(mask), [17])


def test_hampel_flags_a_spike_on_a_smooth_2d_series_in_its_column_only():
    t = np.arange(60) / FPS
    values = np.stack([100 + 40 * np.sin(2 * np.pi * t), 300 + 20 * np.cos(2 * np.pi * t)], axis=-1)
    values[30, 1] -= 80.0
    mask = filters.hampel_mask(values, window=7, threshold=3.5, floor=5.0)
    assert mask.shape == values.shape
    assert_array_equal(np.argwhere(mask), [[30, 1]])


@pytest.mark.parametrize("shape", ["ramp", "parabola"])
def test_hampel_flags_nothing_on_a_clean_ramp_or_parabola(shape):
    t = np.arange(90, dtype=float)
    values = 5.0 * t - 3.0 if shape == "ramp" else 0.4 * (t - 45.0) ** 2
    assert not filters.hampel_mask(values, window=7, threshold=3.5, floor=0.0).any()


def test_hampel_floor_keeps_small_deviations():
    rng = np.random.default_rng(3)
    noise = rng.normal(0.0, 1.0, 300)
    noise[150] += 6.0  # 6 sigma, but only 6 units
    assert not filters.hampel_mask(noise, window=7, threshold=3.5, floor=10.0).any()
    assert filters.hampel_mask(noise, window=7, threshold=3.5, floor=1.0)[150]


def test_hampel_nan_is_never_an_outlier_and_gaps_do_not_pull_statistics():
    values = np.arange(30, dtype=float)
    values[10:14] = np.nan
    mask = filters.hampel_mask(values, window=7, threshold=3.5, floor=0.5)
    assert not mask.any()


def test_hampel_series_shorter_than_window_flags_nothing():
    assert not filters.hampel_mask(np.array([0.0, 100.0, 0.0]), window=7, threshold=3.5, floor=0.0).any()


def test_savgol_preserves_a_quadratic_exactly():
    t = np.arange(50, dtype=float)
    values = 0.3 * t**2 - 2.0 * t + 7.0
    assert_allclose(filters.savgol(values, 9, 2), values, rtol=0, atol=1e-8)


def test_savgol_reduces_noise_variance():
    rng = np.random.default_rng(4)
    t = np.arange(400) / FPS
    truth = 10 * np.sin(2 * np.pi * 0.3 * t)
    noisy = truth + rng.normal(0.0, 1.0, t.size)
    smooth = filters.savgol(noisy, 11, 2)
    assert np.var(smooth - truth) < 0.5 * np.var(noisy - truth)


def test_savgol_keeps_nan_and_handles_short_runs():
    t = np.arange(30, dtype=float)
    values = 0.5 * t**2
    values[[10, 11, 16, 20, 21, 22]] = np.nan
    # Runs: [0, 10) long; [12, 16) four samples (window shrinks to 3); [17, 20) three; [23, 30) seven.
    values[18] = np.nan  # [17, 18) and [19, 20): single samples, kept as they are
    out = filters.savgol(values, 9, 2)
    assert_array_equal(np.isnan(out), np.isnan(values))
    valid = ~np.isnan(values)
    assert_allclose(out[valid], values[valid], atol=1e-8)  # a quadratic survives every run length


def test_savgol_two_dimensional_columns():
    t = np.arange(40, dtype=float)
    values = np.stack([t**2, 3 * t + 1], axis=-1)
    values[5:8, 0] = np.nan
    out = filters.savgol(values, 7, 2)
    assert_array_equal(np.isnan(out), np.isnan(values))
    assert_allclose(out[~np.isnan(values)], values[~np.isnan(values)], atol=1e-8)


def test_time_derivative_of_linear_motion_is_the_slope():
    times = np.arange(50) / FPS
    values = np.stack([120.0 * times + 3.0, -45.0 * times], axis=-1)
    velocity = filters.time_derivative(values, times)
    assert_allclose(velocity[:, 0], 120.0, rtol=1e-9)
    assert_allclose(velocity[:, 1], -45.0, rtol=1e-9)


def test_time_derivative_with_uneven_sample_times():
    rng = np.random.default_rng(5)
    times = np.cumsum(rng.uniform(0.01, 0.06, 60))
    velocity = filters.time_derivative(7.5 * times - 2.0, times)
    assert_allclose(velocity, 7.5, rtol=1e-9)


@pytest.mark.parametrize("uneven", [False, True])
def test_time_derivative_of_a_quadratic_is_linear(uneven):
    times = np.arange(60) / FPS
    if uneven:
        times = np.cumsum(np.random.default_rng(6).uniform(0.01, 0.05, 60))
    values = 4.0 * times**2 - 3.0 * times + 1.0
    velocity = filters.time_derivative(values, times)
    # Central differences are exact for a quadratic at interior samples.
    assert_allclose(velocity[1:-1], 8.0 * times[1:-1] - 3.0, rtol=1e-9, atol=1e-9)
    assert np.isfinite(velocity).all()


def test_time_derivative_per_valid_run():
    times = np.arange(20) / FPS
    values = 2.0 * times
    values[[5, 6, 10, 12]] = np.nan  # run [11, 12) is a single sample
    velocity = filters.time_derivative(values, times)
    assert np.isnan(velocity[[5, 6, 10, 11, 12]]).all()
    finite = np.isfinite(velocity)
    assert finite.sum() == 20 - 5
    assert_allclose(velocity[finite], 2.0, rtol=1e-9)


@pytest.mark.parametrize(
    ("seconds", "fps", "minimum", "expected"),
    [(0.2, 30, 5, 7), (0.2, 25, 5, 5), (0.1, 30, 5, 5), (0.2, 100, 5, 21), (0.5, 60, 3, 31), (0.0, 30, 4, 5)],
)
def test_odd_window(seconds, fps, minimum, expected):
    window = filters.odd_window(seconds, fps, minimum)
    assert window == expected
    assert window % 2 == 1
    assert window >= minimum


# --------------------------------------------------------------------------------------
# body
# --------------------------------------------------------------------------------------


def test_mass_fractions_sum_to_one():
    assert sum(s.mass_fraction for s in SEGMENTS) == pytest.approx(1.0, abs=1e-3)
    assert len(SEGMENT_NAMES) == len(set(SEGMENT_NAMES)) == len(SEGMENTS)
    assert ("com", *SEGMENT_NAMES) == VELOCITY_POINTS


def test_segment_centres_known_positions():
    points = upright(1.0)
    centres = segment_centres(points)
    assert centres.shape == (len(SEGMENTS), 3)
    at = dict(zip(SEGMENT_NAMES, centres))
    hip, knee = points[LANDMARK["left_hip"]], points[LANDMARK["left_knee"]]
    assert_allclose(at["left_thigh"], hip + 0.4095 * (knee - hip), atol=1e-12)
    ears = points[[LANDMARK["left_ear"], LANDMARK["right_ear"]]].mean(axis=0)
    assert_allclose(at["head"], ears, atol=1e-12)
    mid_sh = points[[LANDMARK["left_shoulder"], LANDMARK["right_shoulder"]]].mean(axis=0)
    mid_hip = points[[LANDMARK["left_hip"], LANDMARK["right_hip"]]].mean(axis=0)
    assert_allclose(at["trunk"], mid_sh + 0.4486 * (mid_hip - mid_sh), atol=1e-12)
    hand_end = points[[LANDMARK["right_index"], LANDMARK["right_pinky"]]].mean(axis=0)
    wrist = points[LANDMARK["right_wrist"]]
    assert_allclose(at["right_hand"], wrist + 0.79 * (hand_end - wrist), atol=1e-12)


def test_segment_centres_batched_shape():
    points = np.zeros((4, 2, NUM_LANDMARKS, 2))
    assert segment_centres(points).shape == (4, 2, len(SEGMENTS), 2)
    assert centre_of_mass(points).shape == (4, 2, 2)


def test_com_of_a_single_point_body_is_that_point():
    points = np.broadcast_to(np.array([3.0, -2.0, 5.0]), (NUM_LANDMARKS, 3))
    assert_allclose(centre_of_mass(points), [3.0, -2.0, 5.0], atol=1e-12)


def test_com_is_the_mass_weighted_mean_of_segment_centres():
    rng = np.random.default_rng(7)
    points = rng.normal(size=(NUM_LANDMARKS, 2))
    weights = np.array([s.mass_fraction for s in SEGMENTS])
    expected = (segment_centres(points) * weights[:, None]).sum(axis=0) / weights.sum()
    assert_allclose(centre_of_mass(points), expected, atol=1e-12)


def test_com_translates_and_rotates_with_the_skeleton():
    rng = np.random.default_rng(8)
    points = rng.normal(size=(5, NUM_LANDMARKS, 3))
    com = centre_of_mass(points)
    shift = np.array([0.7, -1.3, 2.1])
    assert_allclose(centre_of_mass(points + shift), com + shift, atol=1e-12)
    angle = np.radians(33.0)
    rot = np.array([[np.cos(angle), -np.sin(angle), 0], [np.sin(angle), np.cos(angle), 0], [0, 0, 1]])
    assert_allclose(centre_of_mass(points @ rot.T), com @ rot.T, atol=1e-12)


def test_com_of_a_symmetric_skeleton_lies_on_the_symmetry_axis():
    points = upright(1.8) + [0.4, 0.0, 0.0]  # symmetric about x = 0.4
    com = centre_of_mass(points)
    assert com[0] == pytest.approx(0.4, abs=1e-12)
    assert com[2] == pytest.approx(0.0, abs=1e-12)
    # An upright adult's centre of mass is a little above half the stature.
    assert 0.5 * 1.8 < com[1] < 0.6 * 1.8


@pytest.mark.parametrize("stature", [1.0, 1.75, 420.0])
def test_body_height_of_an_upright_skeleton(stature):
    points = np.repeat(upright(stature)[None], 6, axis=0)
    assert body_height(points) == pytest.approx(stature, rel=0.03)
    # In image pixels (2-D, y down) the same.
    px = np.repeat(upright_px(stature, 300.0, 900.0)[None], 6, axis=0)
    assert body_height(px) == pytest.approx(stature, rel=0.03)


def test_body_height_uses_the_longer_side_and_the_median_over_time():
    stature = 500.0
    px = np.repeat(upright_px(stature, 300.0, 900.0)[None], 9, axis=0)
    ref = body_height(px)
    # The left shank foreshortened (seen at an angle) in every frame: the right one is used.
    px[:, LANDMARK["left_ankle"], 1] -= 60.0
    # Two frames with the whole body doubled in size: the median ignores them.
    px[[2, 5]] = 2 * px[[2, 5]]
    assert body_height(px) == pytest.approx(ref, rel=1e-9)


def test_body_height_never_seen_is_nan():
    assert np.isnan(body_height(np.full((4, NUM_LANDMARKS, 2), np.nan)))
    assert np.isnan(body_height(np.zeros((0, NUM_LANDMARKS, 2))))
    assert pytest.approx(0.88) == CHAIN_FRACTION_OF_HEIGHT


def test_lowest_foot_y():
    px = np.repeat(upright_px(400.0, 300.0, 900.0)[None], 3, axis=0)
    px[1, LANDMARK["right_heel"], 1] = 911.0  # lowest foot point
    px[1, LANDMARK["left_foot_index"], 1] = 905.0
    px[1, LANDMARK["left_wrist"], 1] = 950.0  # not a foot point
    px[2] = np.nan
    got = lowest_foot_y(px)
    assert got.shape == (3,)
    assert got[0] == pytest.approx(900.0)
    assert got[1] == pytest.approx(911.0)
    assert np.isnan(got[2])


def test_lowest_foot_y_with_some_foot_points_missing():
    px = upright_px(400.0, 300.0, 900.0)[None].copy()
    for name in ("left_heel", "right_heel", "left_foot_index", "right_foot_index"):
        px[0, LANDMARK[name]] = np.nan
    # Only the ankles are left: 0.039 H above the floor.
    assert lowest_foot_y(px)[0] == pytest.approx(900.0 - 0.039 * 400.0)


# --------------------------------------------------------------------------------------
# events
# --------------------------------------------------------------------------------------

BODY_PX = 500.0
FLOOR = 800.0


def foot_rows(frames: int, flights: list[tuple[int, int]], rise_px: float) -> tuple[np.ndarray, np.ndarray]:
    times = np.arange(frames) / FPS
    return FLOOR - ballistic_offsets(frames, FPS, flights, rise_px), times


def test_single_jump_exact_takeoff_landing_and_height():
    foot, times = foot_rows(90, [(30, 45)], rise_px=90.0)  # 15 frames = 0.5 s
    flights = detect_flights(foot, foot, times, BODY_PX, PARAMS)
    assert len(flights) == 1
    f = flights[0]
    assert f.kind == "jump"
    assert (f.takeoff, f.landing) == (30, 45)
    assert f.flight_time_s == pytest.approx(0.5, abs=1e-12)
    assert f.jump_height_m == pytest.approx(G * 0.5**2 / 8, abs=1e-9)
    assert f.apex in (37, 38)
    assert f.rise_bh == pytest.approx(90.0 / BODY_PX, rel=0.01)
    assert f.level_change_bh == pytest.approx(0.0, abs=1e-12)
    assert ground_contacts(flights, times, PARAMS) == []


def test_jump_with_smoothed_stillness_series_keeps_exact_frames():
    foot, times = foot_rows(90, [(30, 45)], rise_px=90.0)
    smooth = filters.savgol(foot, 7, 2)
    flights = detect_flights(foot, smooth, times, BODY_PX, PARAMS)
    assert [(f.kind, f.takeoff, f.landing) for f in flights] == [("jump", 30, 45)]


def physical_rise_px(flight_s: float, body_px: float = BODY_PX, stature_m: float = 1.75) -> float:
    """Apex height of a ballistic flight of ``flight_s`` seconds, in the pixels of a body ``body_px`` tall."""
    return G * flight_s**2 / 8 * body_px / stature_m


def test_two_hops_with_a_short_contact():
    # Hop 1: 30 -> 42 (0.4 s); on the ground on frames 42, 43, 44, 45 (4 frames, 0.1 s); hop 2: 45 -> 57; rest.
    foot, times = foot_rows(100, [(30, 42), (45, 57)], rise_px=physical_rise_px(0.4))
    flights = detect_flights(foot, foot, times, BODY_PX, PARAMS)
    assert [(f.kind, f.takeoff, f.landing) for f in flights] == [("jump", 30, 42), ("jump", 45, 57)]
    assert [f.flight_time_s for f in flights] == pytest.approx([0.4, 0.4], abs=1e-12)
    contacts = ground_contacts(flights, times, PARAMS)
    assert contacts == [(42, 45)]


def test_two_hops_with_a_longer_contact():
    # As above with 5 frames on the ground (42..46, 0.133 s): the contact is itself a short support phase.
    foot, times = foot_rows(100, [(30, 42), (46, 58)], rise_px=physical_rise_px(0.4))
    flights = detect_flights(foot, foot, times, BODY_PX, PARAMS)
    assert [(f.kind, f.takeoff, f.landing) for f in flights] == [("jump", 30, 42), ("jump", 46, 58)]
    assert ground_contacts(flights, times, PARAMS) == [(42, 46)]


def test_steep_hops_touching_the_ground_once_are_split():
    # Apexes too brief to be still: one support phase on each side, the airborne runs split at the touch.
    foot, times = foot_rows(100, [(30, 42), (43, 55)], rise_px=200.0)
    flights = detect_flights(foot, foot, times, BODY_PX, PARAMS)
    assert [(f.kind, f.takeoff, f.landing) for f in flights] == [("jump", 30, 42), ("jump", 43, 55)]
    assert ground_contacts(flights, times, PARAMS) == [(42, 43)]


def test_contacts_longer_than_max_contact_are_rest():
    # Two jumps 2 s apart: the time between is rest, not a contact.
    foot, times = foot_rows(150, [(20, 35), (95, 110)], rise_px=80.0)
    flights = detect_flights(foot, foot, times, BODY_PX, PARAMS)
    assert [(f.takeoff, f.landing) for f in flights] == [(20, 35), (95, 110)]
    assert ground_contacts(flights, times, PARAMS) == []


def test_drop_off_a_box():
    frames = 90
    times = np.arange(frames) / FPS
    drop_px = 0.5 * BODY_PX
    px_per_m = BODY_PX / 1.75
    foot = np.full(frames, FLOOR - drop_px)
    t = times[30:] - times[30]
    fall = FLOOR - drop_px + 0.5 * G * t**2 * px_per_m  # free fall from rest at frame 30
    foot[30:] = np.minimum(fall, FLOOR)
    flights = detect_flights(foot, foot, times, BODY_PX, PARAMS)
    assert len(flights) == 1
    f = flights[0]
    assert f.kind == "drop"
    assert f.jump_height_m is None
    assert f.level_change_bh == pytest.approx(0.5, abs=1e-9)
    landing = int(np.flatnonzero(fall >= FLOOR)[0]) + 30
    assert f.landing == landing
    assert 28 <= f.takeoff <= 33  # a fall from rest leaves the level gradually
    assert f.flight_time_s == pytest.approx(times[f.landing] - times[f.takeoff])


def test_pure_noise_gives_no_flight():
    rng = np.random.default_rng(9)
    times = np.arange(300) / FPS
    foot = FLOOR + rng.normal(0.0, 1.0, times.size)
    assert detect_flights(foot, foot, times, BODY_PX, PARAMS) == []
    assert detect_flights(foot, filters.savgol(foot, 7, 2), times, BODY_PX, PARAMS) == []


def test_flights_need_a_body_height_and_samples():
    foot, times = foot_rows(90, [(30, 45)], rise_px=90.0)
    assert detect_flights(foot, foot, times, float("nan"), PARAMS) == []
    assert detect_flights(foot, foot, times, 0.0, PARAMS) == []
    assert detect_flights(np.full(90, np.nan), np.full(90, np.nan), times, BODY_PX, PARAMS) == []


def test_jump_through_a_tracking_gap_is_not_measured():
    foot, times = foot_rows(90, [(30, 45)], rise_px=90.0)
    foot[37:39] = np.nan
    assert detect_flights(foot, foot, times, BODY_PX, PARAMS) == []


def cycles(n: int, rest_frames: int = 30, period_frames: int = 30) -> np.ndarray:
    """0 at rest, then ``n`` cycles of ``(1 - cos) / 2`` (0 -> 1 -> 0), then rest."""
    phase = np.arange(n * period_frames) / period_frames
    active = (1 - np.cos(2 * np.pi * phase)) / 2
    return np.concatenate([np.zeros(rest_frames), active, np.zeros(rest_frames)])


@pytest.mark.parametrize("n", [1, 2, 3, 7])
def test_count_repetitions_of_cosine_cycles(n):
    signal = 0.3 * cycles(n)  # e.g. com height in body heights
    times = np.arange(signal.size) / FPS
    reps, direction = count_repetitions(signal, times, 0.08, PARAMS)
    assert len(reps) == n
    assert direction == 1
    peaks = [r.peak for r in reps]
    assert peaks == [30 + 15 + 30 * k for k in range(n)]
    assert [r.amplitude for r in reps] == pytest.approx([0.3] * n, abs=1e-9)
    assert all(r.start <= r.peak <= r.end for r in reps)


@pytest.mark.parametrize("n", [2, 3, 7])
def test_count_repetitions_of_squats_on_the_knee_angle(n):
    knee = 170.0 - 80.0 * cycles(n, rest_frames=45, period_frames=54)  # 170 standing, 90 at the bottom
    times = np.arange(knee.size) / FPS
    reps, direction = count_repetitions(knee, times, 20.0, PARAMS)
    assert direction == -1
    assert len(reps) == n
    assert [knee[r.peak] for r in reps] == pytest.approx([90.0] * n)
    assert [r.amplitude for r in reps] == pytest.approx([80.0] * n, abs=1e-6)


def test_count_repetitions_ignores_noise_below_the_minimum_amplitude():
    rng = np.random.default_rng(10)
    signal = 150.0 + rng.normal(0.0, 3.0, 300)
    times = np.arange(signal.size) / FPS
    assert count_repetitions(signal, times, 20.0, PARAMS) == ([], 0)


def test_count_repetitions_too_few_samples_and_nan_runs():
    times = np.arange(4) / FPS
    assert count_repetitions(np.array([0.0, 1.0, 0.0, 1.0]), times, 0.1, PARAMS) == ([], 0)
    signal = 0.3 * cycles(3)
    signal[88:93] = np.nan  # a gap around the end of the 2nd cycle (frame 90)
    times = np.arange(signal.size) / FPS
    reps, direction = count_repetitions(signal, times, 0.08, PARAMS)
    assert direction == 1
    assert [r.peak for r in reps] == [45, 75, 105]


# --------------------------------------------------------------------------------------
# Analyzer on synthetic tracks
# --------------------------------------------------------------------------------------

WIDTH, HEIGHT = 1280, 720
STATURE_PX = 400.0


def translating(frames: int, x0: float, vx: float, vy: float, fps: float = FPS) -> np.ndarray:
    t = np.arange(frames) / fps
    base = upright_px(STATURE_PX, x0, 650.0)
    return base[None] + np.stack([vx * t, vy * t], axis=-1)[:, None, :]


def test_analyzer_constant_velocity():
    frames, vx, vy = 60, 150.0, -30.0
    px = translating(frames, 300.0, vx, vy)
    analysis = Analyzer()(make_chunk(px, WIDTH, HEIGHT), TrackMeta(WIDTH, HEIGHT, FPS))
    assert analysis.track.num_slots == 1
    com_velocity = analysis.velocity_px_s[:, 0, VELOCITY_POINTS.index("com")]
    assert np.isfinite(com_velocity).all()
    assert_allclose(com_velocity[:, 0], vx, rtol=0.01)
    assert_allclose(com_velocity[:, 1], vy, rtol=0.01)
    # Every segment moves with the body.
    assert_allclose(analysis.velocity_px_s[:, 0, :, 0], vx, rtol=0.01)
    assert_allclose(analysis.angular_velocity[:, 0], 0.0, atol=1e-3)
    assert np.isfinite(analysis.angles).all()
    assert analysis.body_height_px[0] == pytest.approx(STATURE_PX, rel=0.03)
    speed = analysis.speed_bh_s[:, 0, 0]
    assert_allclose(speed, np.hypot(vx, vy) / analysis.body_height_px[0], rtol=0.01)
    assert (analysis.contact[:, 0] == 1).all()
    # The smoothed landmarks are where they were put.
    assert_allclose(analysis.landmarks_px[:, 0], px, atol=0.05)

    summary = analysis.summary
    assert summary["persons_found"] == 1
    assert summary["event_counts"]["jump"] == 0
    assert summary["event_counts"]["drop"] == 0
    assert [e for e in analysis.events if e["type"] in ("jump", "drop")] == []
    person = summary["persons"][0]
    assert person["id"] == 0
    assert person["analysed"] is True
    assert person["frames_detected"] == frames
    assert person["jumps"]["count"] == 0
    assert 0.0 <= person["quality"]["score"] <= 1.0
    assert 0.0 <= summary["quality_score"] <= 1.0
    assert person["quality"]["tracking_stability"] == pytest.approx(1.0)
    assert person["quality"]["outlier_share"] == pytest.approx(0.0)
    codes = {flag["code"] for flag in person["flags"]}
    assert not codes & {"implausible_jump", "short_contact", "unstable_tracking", "many_outliers"}
    speed_stats = person["speed_bh_s"]["com"]
    assert speed_stats["mean"] == pytest.approx(np.hypot(vx, vy) / STATURE_PX, rel=0.04)


def test_link_identities_splits_a_slot_that_jumps_across_the_frame():
    frames = 60
    px = translating(frames, 0.2 * WIDTH, 0.0, 0.0)
    px[30:, :, 0] += 0.6 * WIDTH  # from x = 0.2 to x = 0.8 of the width for the rest of the clip
    chunk = make_chunk(px, WIDTH, HEIGHT)
    order = link_identities(chunk.image_xyzv, WIDTH, HEIGHT, max_gap_frames=30, fps=FPS)
    assert order.shape == (frames, 2)
    assert_array_equal(order[:30, 0], 0)
    assert_array_equal(order[30:, 0], -1)
    assert_array_equal(order[:30, 1], -1)
    assert_array_equal(order[30:, 1], 0)


def test_analyzer_reports_the_switched_detection_as_two_persons():
    frames = 60
    px = translating(frames, 0.2 * WIDTH, 0.0, 0.0)
    px[30:, :, 0] += 0.6 * WIDTH
    analysis = Analyzer()(make_chunk(px, WIDTH, HEIGHT), TrackMeta(WIDTH, HEIGHT, FPS))
    # One after the other, the two persons share a lane: the arrays do not grow with the persons.
    assert analysis.track.num_slots == 1
    assert_array_equal(analysis.person[:, 0], np.where(np.arange(frames) < 30, 0, 1))
    assert analysis.track.detected.all()
    dense = analysis.track_by_person()  # one slot per person: the layout before lanes
    assert_array_equal(dense.detected[:, 0], np.arange(frames) < 30)
    assert_array_equal(dense.detected[:, 1], np.arange(frames) >= 30)
    persons = analysis.summary["persons"]
    assert [(p["id"], p["first_frame"], p["last_frame"]) for p in persons] == [(0, 0, 29), (1, 30, 59)]
    assert analysis.summary["persons_found"] == 2
    assert analysis.summary["max_persons_in_frame"] == 1
    # No velocity spike across the switch: each person stands still.
    speed = np.linalg.norm(analysis.velocity_px_s[:, :, 0], axis=-1)
    assert np.nanmax(speed) < 1.0
    first, second = analysis.of_person("com_px", 0), analysis.of_person("com_px", 1)
    assert_allclose(first[:30, 0], 0.2 * WIDTH, atol=0.1)
    assert_allclose(second[30:, 0], 0.8 * WIDTH, atol=0.1)
    assert np.isnan(first[30:]).all() and np.isnan(second[:30]).all()


# --------------------------------------------------------------------------------------
# Summary plausibility flags
# --------------------------------------------------------------------------------------

TALL_W, TALL_H = 720, 1280  # portrait canvas: room above the head for a high jump


def jumping(frames: int, fps: float, flights: list[tuple[int, int]], rise_px: float) -> np.ndarray:
    base = upright_px(STATURE_PX, 360.0, 1200.0)
    up = ballistic_offsets(frames, fps, flights, rise_px)
    px = np.repeat(base[None], frames, axis=0)
    px[..., 1] -= up[:, None]
    return px


def analyse_jumps(frames: int, flights: list[tuple[int, int]], rise_px: float):
    px = jumping(frames, FPS, flights, rise_px)
    return Analyzer(AnalysisParams(sport_type="jump"))(make_chunk(px, TALL_W, TALL_H), TrackMeta(TALL_W, TALL_H, FPS))


def test_summary_flags_an_implausible_jump():
    # Flight of 33 frames at 30 fps = 1.1 s -> g t^2 / 8 = 1.48 m, above 1.2 m (apex at the physical height).
    analysis = analyse_jumps(110, [(30, 63)], physical_rise_px(1.1, STATURE_PX))
    jumps = [e for e in analysis.events if e["type"] == "jump"]
    assert [(j["takeoff_frame"], j["landing_frame"]) for j in jumps] == [(30, 63)]
    jump = jumps[0]
    assert jump["flight_time_s"] == pytest.approx(1.1, abs=1e-4)
    assert jump["height_m"] == pytest.approx(G * 1.1**2 / 8, abs=1e-4)
    assert jump["height_m"] > 1.2
    assert jump["plausible"] is False
    person = analysis.summary["persons"][0]
    codes = [flag["code"] for flag in person["flags"]]
    assert "implausible_jump" in codes
    assert "short_contact" not in codes
    assert {"code": "implausible_jump", "person": 0, "frame": 30} in [
        {k: f[k] for k in ("code", "person", "frame") if k in f} for f in analysis.summary["flags"]
    ]
    # Airborne frames are marked as such.
    assert_array_equal(analysis.contact[:, 0], np.where((np.arange(110) > 30) & (np.arange(110) < 63), 0, 1))


def test_summary_plausible_jump_has_no_flag():
    analysis = analyse_jumps(90, [(30, 45)], physical_rise_px(0.5, STATURE_PX))  # 0.5 s: 0.31 m
    jumps = [e for e in analysis.events if e["type"] == "jump"]
    assert [(j["takeoff_frame"], j["landing_frame"]) for j in jumps] == [(30, 45)]
    assert jumps[0]["height_m"] == pytest.approx(G * 0.5**2 / 8, abs=1e-4)
    assert jumps[0]["plausible"] is True
    person = analysis.summary["persons"][0]
    assert person["jumps"]["count"] == 1
    assert person["jumps"]["best_height_m"] == pytest.approx(0.3066, abs=1e-4)
    assert person["jumps"]["mean_flight_time_s"] == pytest.approx(0.5, abs=1e-4)
    assert "implausible_jump" not in [flag["code"] for flag in person["flags"]]


def test_summary_flags_a_short_contact():
    # Two steep hops touching the ground on frames 42 and 43 only: contact 1/30 s = 33 ms (< 50 ms).
    analysis = analyse_jumps(100, [(30, 42), (43, 55)], 0.3 * STATURE_PX)
    jumps = [e for e in analysis.events if e["type"] == "jump"]
    assert [(j["takeoff_frame"], j["landing_frame"]) for j in jumps] == [(30, 42), (43, 55)]
    contacts = [e for e in analysis.events if e["type"] == "contact"]
    assert [(c["start_frame"], c["end_frame"]) for c in contacts] == [(42, 43)]
    assert contacts[0]["contact_time_s"] == pytest.approx(1 / 30, abs=1e-4)
    assert contacts[0]["plausible"] is False
    person = analysis.summary["persons"][0]
    codes = [flag["code"] for flag in person["flags"]]
    assert "short_contact" in codes
    assert "implausible_jump" not in codes
    assert person["contacts"]["count"] == 1
    assert person["contacts"]["min_s"] == pytest.approx(1 / 30, abs=1e-4)


def flight(takeoff: int, landing: int, fps: float) -> Flight:
    return Flight("jump", takeoff, (takeoff + landing) // 2, landing, (landing - takeoff) / fps, 0.2, 0.0)


@pytest.mark.parametrize(("flight_s", "flagged"), [(0.98, False), (0.99, True), (1.1, True), (0.5, False)])
def test_person_events_jump_height_flag_threshold(flight_s, flagged):
    # g t^2 / 8 = 1.2 m at t = 0.9892 s.
    fps = 100.0
    frames = np.arange(300)
    times = frames / fps
    landing = 50 + int(round(flight_s * fps))
    person = PersonSeries(
        slot=3, rows=frames, present=np.ones(300, bool), times=times, flights=[flight(50, landing, fps)]
    )
    (event,) = person.events(frames + 1000, times)
    assert event["type"] == "jump"
    assert event["person"] == 3
    assert (event["takeoff_frame"], event["landing_frame"]) == (1050, 1000 + landing)
    assert event["height_m"] == pytest.approx(G * flight_s**2 / 8, abs=1e-4)
    assert event["plausible"] is (not flagged)
    assert len(event["flags"]) == int(flagged)


@pytest.mark.parametrize(("contact_frames", "flagged"), [(4, True), (6, False), (0, True)])
def test_person_events_short_contact_flag_threshold(contact_frames, flagged):
    fps = 100.0
    frames = np.arange(300)
    times = frames / fps
    first = flight(50, 80, fps)
    second = flight(80 + contact_frames, 110 + contact_frames, fps)
    contacts = ground_contacts([first, second], times, PARAMS)
    assert contacts == [(80, 80 + contact_frames)]
    person = PersonSeries(
        slot=0, rows=frames, present=np.ones(300, bool), times=times, flights=[first, second], contacts=contacts
    )
    (event,) = [e for e in person.events(frames, times) if e["type"] == "contact"]
    assert event["contact_time_s"] == pytest.approx(contact_frames / fps, abs=1e-4)
    assert event["plausible"] is (not flagged)
    assert len(event["flags"]) == int(flagged)


def test_repetitions_are_ordered_and_do_not_overlap():
    """Each repetition spans valley to valley between its neighbours, even where
    find_peaks' bases of a taller peak reach back past the smaller ones."""
    fps = 30.0
    t = np.arange(int(6 * fps)) / fps
    heights = [40.0, 60.0, 50.0, 80.0, 45.0]  # degrees above a 100-degree rest
    signal = np.full(t.shape, 100.0)
    for k, height in enumerate(heights):
        cycle = (t >= 0.5 + k) & (t < 1.5 + k)
        signal[cycle] += height * (1 - np.cos(2 * np.pi * (t[cycle] - 0.5 - k))) / 2
        signal[cycle] += 2.0 * k  # valleys between cycles creep upwards
    reps, direction = count_repetitions(signal, t, 20.0, EventParams())
    assert direction == 1 and len(reps) == len(heights)
    peaks = [r.peak for r in reps]
    assert peaks == sorted(peaks)
    for before, after in zip(reps, reps[1:]):
        assert before.start <= before.peak <= before.end <= after.start <= after.peak


def test_a_slot_never_seen_is_reported_unanalysed_even_without_a_minimum():
    """Unlinked (slot k = person k over the whole track), a slot that holds no one is
    not analysed, whatever ``min_track_frames`` says."""
    px = translating(40, 0.3 * WIDTH, 0.0, 0.0)
    chunk = make_chunk(px, WIDTH, HEIGHT)
    two = PoseChunk.empty(0, chunk.num_frames, 2, FPS)
    for name in ("image_xyzv", "world_xyz", "presence"):
        getattr(two, name)[:, :1] = getattr(chunk, name)
    analysis = Analyzer(AnalysisParams(min_track_frames=0)).analyze_linked(two, TrackMeta(WIDTH, HEIGHT, FPS))
    assert [p["id"] for p in analysis.summary["persons"]] == [0]
    assert analysis.summary["persons"][0]["analysed"]
    assert_array_equal(analysis.person, np.tile([0, 1], (40, 1)))
    assert np.isnan(analysis.of_person("angles", 1)).all()
