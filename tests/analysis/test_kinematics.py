import numpy as np
import pytest

from pipeline.analysis.kinematics import angle_at, joint_angles
from pipeline.pose.skeleton import ANGLE_NAMES, JOINT_ANGLES, LANDMARK


def test_right_angle_is_90():
    assert angle_at(np.array([1.0, 0, 0]), np.zeros(3), np.array([0, 1.0, 0])) == pytest.approx(90.0)


def test_straight_and_folded():
    b = np.zeros(2)
    assert angle_at(np.array([-1.0, 0]), b, np.array([2.0, 0])) == pytest.approx(180.0)
    assert angle_at(np.array([1.0, 0]), b, np.array([3.0, 0])) == pytest.approx(0.0, abs=1e-6)


def test_degenerate_segment_is_nan():
    assert np.isnan(angle_at(np.zeros(3), np.zeros(3), np.ones(3)))


def test_knee_angle_from_skeleton():
    points = np.zeros((33, 3))
    points[LANDMARK["left_hip"]] = [0, 1, 0]
    points[LANDMARK["left_knee"]] = [0, 0, 0]
    points[LANDMARK["left_ankle"]] = [np.sin(np.radians(60)), -np.cos(np.radians(60)), 0]
    angles = joint_angles(points)
    assert angles.shape == (len(JOINT_ANGLES),)
    assert angles[ANGLE_NAMES.index("left_knee")] == pytest.approx(120.0, abs=1e-4)


def test_invisible_landmark_masks_angle():
    rng = np.random.default_rng(0)
    points = rng.normal(size=(5, 33, 3))
    visibility = np.ones((5, 33))
    visibility[2, LANDMARK["right_wrist"]] = 0.1
    angles = joint_angles(points, visibility, min_visibility=0.5)
    assert np.isnan(angles[2, ANGLE_NAMES.index("right_elbow")])
    assert not np.isnan(angles[2, ANGLE_NAMES.index("left_elbow")])
    assert np.isfinite(angles[[0, 1, 3, 4]]).all()


def test_long_series_in_blocks_match_frame_by_frame():
    """joint_angles works through a long series in blocks; the rows at and around the
    block edges give what each frame gives alone, masks included."""
    from pipeline.analysis.kinematics import ROWS_PER_BLOCK

    rng = np.random.default_rng(1)
    frames = 2 * ROWS_PER_BLOCK + 5
    points = rng.normal(size=(frames, 2, 33, 3))
    visibility = rng.uniform(size=(frames, 2, 33))
    angles = joint_angles(points, visibility, min_visibility=0.3)
    assert angles.shape == (frames, 2, len(JOINT_ANGLES)) and angles.dtype == np.float32
    for f in (0, ROWS_PER_BLOCK // 2 - 1, ROWS_PER_BLOCK // 2, ROWS_PER_BLOCK, frames - 1):
        for slot in (0, 1):
            alone = joint_angles(points[f, slot], visibility[f, slot], min_visibility=0.3)
            np.testing.assert_array_equal(angles[f, slot], alone)
    assert np.isnan(angles).any() and np.isfinite(angles).any()
