"""Kinematics on landmark arrays (pure numpy, NaN-aware)."""

from __future__ import annotations

import numpy as np

from pipeline.pose.skeleton import JOINT_ANGLES


def angle_at(a: np.ndarray, b: np.ndarray, c: np.ndarray) -> np.ndarray:
    """Angle ABC in degrees (at vertex ``b``) for points ``[..., D]``; NaN if a segment has no length."""
    u = a - b
    v = c - b
    nu = np.linalg.norm(u, axis=-1)
    nv = np.linalg.norm(v, axis=-1)
    with np.errstate(invalid="ignore", divide="ignore"):
        cos = np.sum(u * v, axis=-1) / (nu * nv)
    cos = np.where((nu > 0) & (nv > 0), cos, np.nan)
    return np.degrees(np.arccos(np.clip(cos, -1.0, 1.0)))


def joint_angles(points: np.ndarray, visibility: np.ndarray | None = None, min_visibility: float = 0.0) -> np.ndarray:
    """Joint angles (``JOINT_ANGLES`` order) for landmarks ``points [..., 33, D]``.

    Returns ``[..., len(JOINT_ANGLES)]`` float32 degrees. With ``visibility
    [..., 33]`` an angle is NaN when any of its three landmarks is less visible
    than ``min_visibility``.
    """
    triples = np.array(list(JOINT_ANGLES.values()))
    a, b, c = (points[..., triples[:, k], :] for k in range(3))
    angles = angle_at(a, b, c)
    if visibility is not None and min_visibility > 0:
        seen = visibility[..., triples] >= min_visibility  # [..., A, 3]
        angles = np.where(seen.all(axis=-1), angles, np.nan)
    return angles.astype(np.float32)
