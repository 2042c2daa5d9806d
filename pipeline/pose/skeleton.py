"""The 33-landmark BlazePose skeleton: names, drawing connections, joint angles."""

from __future__ import annotations

LANDMARK_NAMES: tuple[str, ...] = (
    "nose", "left_eye_inner", "left_eye", "left_eye_outer", "right_eye_inner",
    "right_eye", "right_eye_outer", "left_ear", "right_ear", "mouth_left",
    "mouth_right", "left_shoulder", "right_shoulder", "left_elbow", "right_elbow",
    "left_wrist", "right_wrist", "left_pinky", "right_pinky", "left_index",
    "right_index", "left_thumb", "right_thumb", "left_hip", "right_hip",
    "left_knee", "right_knee", "left_ankle", "right_ankle", "left_heel",
    "right_heel", "left_foot_index", "right_foot_index",
)  # fmt: skip
NUM_LANDMARKS = len(LANDMARK_NAMES)
LANDMARK = {name: i for i, name in enumerate(LANDMARK_NAMES)}

# Pairs of landmark indices joined by a bone when drawing.
CONNECTIONS: tuple[tuple[int, int], ...] = (
    (0, 1), (1, 2), (2, 3), (3, 7), (0, 4), (4, 5), (5, 6), (6, 8), (9, 10),
    (11, 12), (11, 13), (13, 15), (15, 17), (15, 19), (15, 21), (17, 19),
    (12, 14), (14, 16), (16, 18), (16, 20), (16, 22), (18, 20), (11, 23),
    (12, 24), (23, 24), (23, 25), (24, 26), (25, 27), (26, 28), (27, 29),
    (28, 30), (29, 31), (30, 32), (27, 31), (28, 32),
)  # fmt: skip


def _joint(a: str, b: str, c: str) -> tuple[int, int, int]:
    return LANDMARK[a], LANDMARK[b], LANDMARK[c]


# Joint angle = angle at the middle landmark between the two segments, degrees.
JOINT_ANGLES: dict[str, tuple[int, int, int]] = {
    "left_elbow": _joint("left_shoulder", "left_elbow", "left_wrist"),
    "right_elbow": _joint("right_shoulder", "right_elbow", "right_wrist"),
    "left_shoulder": _joint("left_hip", "left_shoulder", "left_elbow"),
    "right_shoulder": _joint("right_hip", "right_shoulder", "right_elbow"),
    "left_hip": _joint("left_shoulder", "left_hip", "left_knee"),
    "right_hip": _joint("right_shoulder", "right_hip", "right_knee"),
    "left_knee": _joint("left_hip", "left_knee", "left_ankle"),
    "right_knee": _joint("right_hip", "right_knee", "right_ankle"),
    "left_ankle": _joint("left_knee", "left_ankle", "left_foot_index"),
    "right_ankle": _joint("right_knee", "right_ankle", "right_foot_index"),
}
ANGLE_NAMES: tuple[str, ...] = tuple(JOINT_ANGLES)
