"""What each ``--sport_type`` highlights: angles, events, repetition signals.

Every metric is computed for every sport; the profile decides what the
annotated video labels, what the report plots first, which signals count as
repetitions, and what the summary's ``highlights`` block lists.
"""

from __future__ import annotations

from dataclasses import dataclass

from pipeline.config import DEFAULT_SPORT, SPORT_TYPES

# Signals a repetition can be counted on, with the smallest swing that counts.
# Angles in degrees (mean of left and right), positions in body heights.
REPETITION_SIGNALS: dict[str, float] = {
    "knee_angle": 20.0,
    "hip_angle": 20.0,
    "shoulder_angle": 30.0,
    "elbow_angle": 30.0,
    "com_height": 0.08,
    "com_lateral": 0.15,
}


@dataclass(frozen=True)
class SportProfile:
    angles: tuple[str, ...]  # joint angles labelled in the video and plotted first
    events: tuple[str, ...]  # event types listed in the highlights ("jump", "drop", "contact", "repetition")
    repetition_signals: tuple[str, ...]  # candidates; the most periodic one is used


_LEGS = ("left_knee", "right_knee", "left_hip", "right_hip")
SPORT_PROFILES: dict[str, SportProfile] = {
    "general": SportProfile(
        _LEGS + ("left_elbow", "right_elbow"), ("jump", "drop", "repetition"), tuple(REPETITION_SIGNALS)
    ),
    "jump": SportProfile(_LEGS + ("left_ankle", "right_ankle"), ("jump", "drop", "contact"), ()),
    "squat": SportProfile(
        _LEGS + ("left_ankle", "right_ankle"), ("repetition",), ("knee_angle", "hip_angle", "com_height")
    ),
    "jumping_jacks": SportProfile(
        ("left_shoulder", "right_shoulder", "left_hip", "right_hip"),
        ("repetition", "jump"),
        ("shoulder_angle", "com_lateral"),
    ),
    "running": SportProfile(_LEGS + ("left_elbow", "right_elbow"), ("contact", "jump"), ("knee_angle",)),
    "weightlifting": SportProfile(
        _LEGS + ("left_elbow", "right_elbow", "left_shoulder", "right_shoulder"),
        ("repetition",),
        ("knee_angle", "hip_angle", "elbow_angle", "com_height"),
    ),
}
assert tuple(SPORT_PROFILES) == SPORT_TYPES, "every sport type in pipeline.config needs a profile here"
assert DEFAULT_SPORT in SPORT_PROFILES
