"""Person identity across frames: MediaPipe returns the poses of a frame in no
particular order; this links them into tracks (slot k = the same person)."""

from __future__ import annotations

import warnings

import numpy as np
from scipy.optimize import linear_sum_assignment

# Landmarks that define where a person is: shoulders and hips.
_TORSO = np.array([11, 12, 23, 24])


def person_boxes(image_xyzv: np.ndarray, width: int, height: int) -> np.ndarray:
    """Pixel boxes ``[..., 4]`` (x0, y0, x1, y1) around each person's landmarks; NaN if absent."""
    xy = image_xyzv[..., :2] * np.array([width, height], dtype=np.float32)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN slots stay NaN
        return np.concatenate([np.nanmin(xy, axis=-2), np.nanmax(xy, axis=-2)], axis=-1)


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU of boxes ``a [N, 4]`` and ``b [M, 4]`` -> ``[N, M]``."""
    a = a[:, None, :]
    b = b[None, :, :]
    inter_w = np.clip(np.minimum(a[..., 2], b[..., 2]) - np.maximum(a[..., 0], b[..., 0]), 0, None)
    inter_h = np.clip(np.minimum(a[..., 3], b[..., 3]) - np.maximum(a[..., 1], b[..., 1]), 0, None)
    inter = inter_w * inter_h
    area_a = (a[..., 2] - a[..., 0]) * (a[..., 3] - a[..., 1])
    area_b = (b[..., 2] - b[..., 0]) * (b[..., 3] - b[..., 1])
    union = area_a + area_b - inter
    return np.where(union > 0, inter / np.where(union > 0, union, 1), 0.0)


def torso_centres(image_xyzv: np.ndarray, width: int, height: int) -> np.ndarray:
    """Pixel centre ``[..., 2]`` of shoulders and hips; NaN where the slot is empty."""
    xy = image_xyzv[..., _TORSO, :2] * np.array([width, height], dtype=np.float32)
    return xy.mean(axis=-2)


def link_identities(image_xyzv: np.ndarray, width: int, height: int, max_gap_frames: int = 30) -> np.ndarray:
    """Slot order per frame so that slot ``k`` follows one person.

    ``image_xyzv`` is ``[F, P, 33, 4]``. Returns ``order [F, P]``: new slot ``k``
    of frame ``f`` takes old slot ``order[f, k]``. Each frame's detections are
    assigned to the tracks' last known torso centres by minimum total distance
    (Hungarian); a track unseen for more than ``max_gap_frames`` frames is free
    for a new person.
    """
    frames, slots = image_xyzv.shape[:2]
    centres = torso_centres(image_xyzv, width, height)
    last = np.full((slots, 2), np.nan, dtype=np.float64)
    last_seen = np.full(slots, -(10**9))
    order = np.tile(np.arange(slots), (frames, 1))
    for f in range(frames):
        present = np.where(~np.isnan(centres[f, :, 0]))[0]
        if present.size == 0:
            continue
        alive = (f - last_seen) <= max_gap_frames
        # Distance to live tracks; free tracks cost a constant larger than any distance.
        distance = np.linalg.norm(last[:, None, :] - centres[f, present][None, :, :], axis=-1)
        cost = np.where(alive[:, None] & ~np.isnan(distance), distance, 1e9)
        tracks, picks = linear_sum_assignment(cost)
        new_order = np.full(slots, -1)
        for track, pick in zip(tracks, picks):
            new_order[track] = present[pick]
            last[track] = centres[f, present[pick]]
            last_seen[track] = f
        unused = [s for s in range(slots) if s not in set(new_order[new_order >= 0])]
        new_order[new_order < 0] = unused
        order[f] = new_order
    return order
