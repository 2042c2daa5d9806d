"""Kinematics on landmark arrays (pure numpy, NaN-aware)."""

from __future__ import annotations

import numpy as np

from pipeline.pose.skeleton import JOINT_ANGLES

ROWS_PER_BLOCK = 4096


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
    """Joint angles (``JOINT_ANGLES`` order) for landmarks ``points [..., L, D]``.

    Returns ``[..., len(JOINT_ANGLES)]`` float32 degrees. With ``visibility
    [..., L]`` an angle is NaN when any of its three landmarks is less visible
    than ``min_visibility``.
    """
    triples = np.array(list(JOINT_ANGLES.values()))
    lead = points.shape[:-2]
    flat = points.reshape(-1, *points.shape[-2:])
    seen_flat = None
    if visibility is not None and min_visibility > 0:
        seen_flat = (visibility[..., triples] >= min_visibility).all(axis=-1).reshape(-1, len(triples))
    out = np.empty((flat.shape[0], len(triples)), np.float32)
    for start in range(0, flat.shape[0], ROWS_PER_BLOCK):  # blocks: the temporaries stay small on long tracks
        block = flat[start : start + ROWS_PER_BLOCK]
        angles = angle_at(*(block[:, triples[:, k], :] for k in range(3)))
        if seen_flat is not None:
            angles = np.where(seen_flat[start : start + ROWS_PER_BLOCK], angles, np.nan)
        out[start : start + ROWS_PER_BLOCK] = angles
    return out.reshape(*lead, len(triples))
