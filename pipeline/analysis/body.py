"""Body segments: centre of mass from segment weights, and body height.

Segment masses and centre-of-mass positions follow de Leva (1996), "Adjustments
to Zatsiorsky-Seluyanov's segment inertia parameters" (male values), with the
segment ends mapped to the BlazePose landmarks available: the head's centre is
taken between the ears, the trunk runs from the mid-shoulder to the mid-hip,
the hand from the wrist to the middle of the index and pinky knuckles, the
foot from the heel to the toe tip.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from pipeline.pose.skeleton import LANDMARK


@dataclass(frozen=True)
class Segment:
    name: str
    proximal: tuple[int, ...]  # landmarks averaged to give the proximal end
    distal: tuple[int, ...]
    mass_fraction: float  # of body mass
    com_fraction: float  # centre of mass, from the proximal end, as a fraction of the length


def _ids(*names: str) -> tuple[int, ...]:
    return tuple(LANDMARK[n] for n in names)


def _limbs(side: str) -> list[Segment]:
    s = side
    return [
        Segment(f"{s}_upper_arm", _ids(f"{s}_shoulder"), _ids(f"{s}_elbow"), 0.0271, 0.5772),
        Segment(f"{s}_forearm", _ids(f"{s}_elbow"), _ids(f"{s}_wrist"), 0.0162, 0.4574),
        Segment(f"{s}_hand", _ids(f"{s}_wrist"), _ids(f"{s}_index", f"{s}_pinky"), 0.0061, 0.7900),
        Segment(f"{s}_thigh", _ids(f"{s}_hip"), _ids(f"{s}_knee"), 0.1416, 0.4095),
        Segment(f"{s}_shank", _ids(f"{s}_knee"), _ids(f"{s}_ankle"), 0.0433, 0.4459),
        Segment(f"{s}_foot", _ids(f"{s}_heel"), _ids(f"{s}_foot_index"), 0.0137, 0.4415),
    ]


SEGMENTS: tuple[Segment, ...] = (
    # Head and neck: centre between the ears (the whole-segment centre lies near the ear canal).
    Segment("head", _ids("left_ear", "right_ear"), _ids("left_ear", "right_ear"), 0.0694, 0.0),
    Segment("trunk", _ids("left_shoulder", "right_shoulder"), _ids("left_hip", "right_hip"), 0.4346, 0.4486),
    *_limbs("left"),
    *_limbs("right"),
)
SEGMENT_NAMES: tuple[str, ...] = tuple(s.name for s in SEGMENTS)
# Points whose velocities are reported: every segment's centre, and the whole body's.
VELOCITY_POINTS: tuple[str, ...] = ("com", *SEGMENT_NAMES)

# Body height from the chain ankle-knee-hip-shoulder-nose. With Drillis & Contini's
# segment lengths (fractions of stature H), that chain is about 0.88 H: shank
# 0.246, thigh 0.245, hip to shoulder 0.288, shoulder to nose about 0.10.
CHAIN_FRACTION_OF_HEIGHT = 0.88
FOOT_POINTS = _ids("left_ankle", "right_ankle", "left_heel", "right_heel", "left_foot_index", "right_foot_index")


def segment_centres(points: np.ndarray) -> np.ndarray:
    """Centre of mass of each segment, ``[..., len(SEGMENTS), D]`` for landmarks ``[..., L, D]``."""
    centres = []
    for seg in SEGMENTS:
        a = points[..., list(seg.proximal), :].mean(axis=-2)
        b = points[..., list(seg.distal), :].mean(axis=-2)
        centres.append(a + seg.com_fraction * (b - a))
    return np.stack(centres, axis=-2)


def centre_of_mass(points: np.ndarray) -> np.ndarray:
    """Whole-body centre of mass ``[..., D]``: segment centres weighted by mass fraction."""
    weights = np.array([s.mass_fraction for s in SEGMENTS])
    weights = weights / weights.sum()
    return np.einsum("...sd,s->...d", segment_centres(points), weights)


def _length(points: np.ndarray, a: tuple[int, ...], b: tuple[int, ...]) -> np.ndarray:
    pa = points[..., list(a), :].mean(axis=-2)
    pb = points[..., list(b), :].mean(axis=-2)
    return np.linalg.norm(pa - pb, axis=-1)


def body_height(points: np.ndarray) -> float:
    """Stature in the units of ``points [T, L, D]`` (pixels or metres), NaN if never seen.

    Each chain link is the median over time of the longer of the left and
    right sides (the side less foreshortened by the view); the chain is then
    scaled to full height with ``CHAIN_FRACTION_OF_HEIGHT``.
    """
    if points.shape[0] == 0:
        return float("nan")

    def both_sides(upper: str, lower: str) -> np.ndarray:
        left = _length(points, _ids(f"left_{upper}"), _ids(f"left_{lower}"))
        right = _length(points, _ids(f"right_{upper}"), _ids(f"right_{lower}"))
        return np.fmax(left, right)

    shoulders = _ids("left_shoulder", "right_shoulder")
    links = [
        both_sides("knee", "ankle"),
        both_sides("hip", "knee"),
        _length(points, _ids("left_hip", "right_hip"), shoulders),
        _length(points, shoulders, _ids("nose")),
    ]
    medians = [np.nanmedian(link) if np.isfinite(link).any() else np.nan for link in links]
    return float(np.sum(medians) / CHAIN_FRACTION_OF_HEIGHT)


def lowest_foot_y(points_px: np.ndarray) -> np.ndarray:
    """Image row of the lowest foot point (largest y) per frame, ``[T]`` for ``[T, L, 2]``."""
    feet = points_px[..., list(FOOT_POINTS), 1]
    out = np.full(feet.shape[:-1], np.nan)
    seen = ~np.isnan(feet).all(axis=-1)
    out[seen] = np.nanmax(feet[seen], axis=-1)
    return out
