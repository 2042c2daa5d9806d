"""Skeletons: the landmarks a pose backend returns, their drawing connections
and the joint angles measured on them. ``BLAZEPOSE_33`` is MediaPipe's.

The module-level names (``LANDMARK_NAMES``, ``NUM_LANDMARKS``, ``LANDMARK``,
``CONNECTIONS``, ``JOINT_ANGLES``, ``ANGLE_NAMES``) are those of
``DEFAULT_SKELETON``.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property


@dataclass(frozen=True)
class Skeleton:
    """A backend's landmarks, by index: ``landmark_names[i]`` is landmark ``i``.

    - ``connections``: pairs of landmark indices joined by a bone when drawing;
    - ``angles``: ``(name, (a, b, c))`` joint angles, the angle at landmark
      ``b`` between the segments to ``a`` and to ``c``, in degrees.

    Plain values only (hashable, picklable).
    """

    name: str
    landmark_names: tuple[str, ...]
    connections: tuple[tuple[int, int], ...] = ()
    angles: tuple[tuple[str, tuple[int, int, int]], ...] = ()

    def __post_init__(self) -> None:
        count = len(self.landmark_names)
        if count == 0:
            raise ValueError(f"{self.name}: expected at least one landmark, got none")
        if len(set(self.landmark_names)) != count:
            raise ValueError(f"{self.name}: expected unique landmark names, got {self.landmark_names}")
        for pair in self.connections:
            if len(pair) != 2 or not all(0 <= i < count for i in pair):
                raise ValueError(f"{self.name}: connection {pair}: expected two indices in [0, {count}), got {pair}")
        names = [name for name, _ in self.angles]
        if len(set(names)) != len(names):
            raise ValueError(f"{self.name}: expected unique angle names, got {names}")
        for name, triplet in self.angles:
            if len(triplet) != 3 or not all(0 <= i < count for i in triplet):
                raise ValueError(f"{self.name}: angle {name}: expected three indices in [0, {count}), got {triplet}")

    @property
    def num_landmarks(self) -> int:
        return len(self.landmark_names)

    @cached_property
    def landmark_index(self) -> dict[str, int]:
        """Landmark name -> index."""
        return {name: i for i, name in enumerate(self.landmark_names)}

    def index(self, name: str) -> int:
        """The index of landmark ``name``; raises KeyError naming the skeleton."""
        try:
            return self.landmark_index[name]
        except KeyError:
            raise KeyError(f"{self.name} has no landmark {name!r}") from None

    @property
    def angle_names(self) -> tuple[str, ...]:
        return tuple(name for name, _ in self.angles)

    @cached_property
    def joint_angles(self) -> dict[str, tuple[int, int, int]]:
        """Angle name -> ``(a, b, c)`` landmark indices (angle at ``b``)."""
        return dict(self.angles)


_BLAZEPOSE_NAMES: tuple[str, ...] = (
    "nose", "left_eye_inner", "left_eye", "left_eye_outer", "right_eye_inner",
    "right_eye", "right_eye_outer", "left_ear", "right_ear", "mouth_left",
    "mouth_right", "left_shoulder", "right_shoulder", "left_elbow", "right_elbow",
    "left_wrist", "right_wrist", "left_pinky", "right_pinky", "left_index",
    "right_index", "left_thumb", "right_thumb", "left_hip", "right_hip",
    "left_knee", "right_knee", "left_ankle", "right_ankle", "left_heel",
    "right_heel", "left_foot_index", "right_foot_index",
)  # fmt: skip

_BLAZEPOSE_CONNECTIONS: tuple[tuple[int, int], ...] = (
    (0, 1), (1, 2), (2, 3), (3, 7), (0, 4), (4, 5), (5, 6), (6, 8), (9, 10),
    (11, 12), (11, 13), (13, 15), (15, 17), (15, 19), (15, 21), (17, 19),
    (12, 14), (14, 16), (16, 18), (16, 20), (16, 22), (18, 20), (11, 23),
    (12, 24), (23, 24), (23, 25), (24, 26), (25, 27), (26, 28), (27, 29),
    (28, 30), (29, 31), (30, 32), (27, 31), (28, 32),
)  # fmt: skip

# Joint angle = angle at the middle landmark between the two segments, degrees.
_BLAZEPOSE_ANGLES: dict[str, tuple[str, str, str]] = {
    "left_elbow": ("left_shoulder", "left_elbow", "left_wrist"),
    "right_elbow": ("right_shoulder", "right_elbow", "right_wrist"),
    "left_shoulder": ("left_hip", "left_shoulder", "left_elbow"),
    "right_shoulder": ("right_hip", "right_shoulder", "right_elbow"),
    "left_hip": ("left_shoulder", "left_hip", "left_knee"),
    "right_hip": ("right_shoulder", "right_hip", "right_knee"),
    "left_knee": ("left_hip", "left_knee", "left_ankle"),
    "right_knee": ("right_hip", "right_knee", "right_ankle"),
    "left_ankle": ("left_knee", "left_ankle", "left_foot_index"),
    "right_ankle": ("right_knee", "right_ankle", "right_foot_index"),
}

# MediaPipe's 33-landmark BlazePose topology.
BLAZEPOSE_33 = Skeleton(
    name="blazepose_33",
    landmark_names=_BLAZEPOSE_NAMES,
    connections=_BLAZEPOSE_CONNECTIONS,
    angles=tuple(
        (angle, tuple(_BLAZEPOSE_NAMES.index(name) for name in triplet)) for angle, triplet in _BLAZEPOSE_ANGLES.items()
    ),
)
DEFAULT_SKELETON = BLAZEPOSE_33

LANDMARK_NAMES: tuple[str, ...] = DEFAULT_SKELETON.landmark_names
NUM_LANDMARKS: int = DEFAULT_SKELETON.num_landmarks
LANDMARK: dict[str, int] = DEFAULT_SKELETON.landmark_index
CONNECTIONS: tuple[tuple[int, int], ...] = DEFAULT_SKELETON.connections
JOINT_ANGLES: dict[str, tuple[int, int, int]] = DEFAULT_SKELETON.joint_angles
ANGLE_NAMES: tuple[str, ...] = DEFAULT_SKELETON.angle_names
