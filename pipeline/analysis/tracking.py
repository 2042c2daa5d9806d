"""Person identity across frames: MediaPipe returns the poses of a frame in no
particular order; this links them into tracks (slot k = the same person)."""

from __future__ import annotations

import warnings

import numpy as np

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


# A detection farther from a track than this speed allows (body heights per
# second, the box height standing in for the body height) is another person.
MAX_SPEED_BH_S = 10.0
_UNASSIGNED = 1e9


def link_identities(
    image_xyzv: np.ndarray, width: int, height: int, max_gap_frames: int = 30, fps: float = 30.0
) -> np.ndarray:
    """Tracks of people across frames: slot ``k`` of the result follows one person.

    ``image_xyzv`` is ``[F, P, L, 4]``. Returns ``order [F, K]`` (K >= P):
    track ``k`` takes the detection in slot ``order[f, k]`` of frame ``f``, or
    nothing where it is -1. Each frame's detections are assigned to the live
    tracks' last torso centres by minimum total distance (Hungarian), within a
    gate of ``MAX_SPEED_BH_S`` body heights per second; a detection outside
    every gate (the landmarker switched to someone else) starts a new track.
    A track unseen for more than ``max_gap_frames`` frames is closed and its
    slot may be given to a new person.
    """
    from scipy.optimize import linear_sum_assignment  # imported when used: the driver never needs scipy

    frames, slots = image_xyzv.shape[:2]
    centres = torso_centres(image_xyzv, width, height)
    boxes = person_boxes(image_xyzv, width, height)
    min_gate = 0.02 * float(np.hypot(width, height))
    last: list[np.ndarray] = []
    last_seen: list[int] = []
    rows: list[list[int]] = []  # per frame, per track: detection slot or -1
    for f in range(frames):
        present = np.where(~np.isnan(centres[f, :, 0]))[0]
        row = [-1] * len(last)
        if present.size:
            assigned = set()
            if last:
                elapsed = (f - np.array(last_seen))[:, None]
                box_h = boxes[f, present, 3] - boxes[f, present, 1]
                gate = np.maximum(MAX_SPEED_BH_S * box_h[None, :] * elapsed / fps, min_gate)
                distance = np.linalg.norm(np.array(last)[:, None, :] - centres[f, present][None, :, :], axis=-1)
                ok = (elapsed <= max_gap_frames) & (distance <= gate)
                cost = np.where(ok, distance, _UNASSIGNED)
                for track, pick in zip(*linear_sum_assignment(cost)):
                    if cost[track, pick] < _UNASSIGNED:
                        row[track] = int(present[pick])
                        assigned.add(int(pick))
            for pick in (p for p in range(present.size) if p not in assigned):
                free = [t for t in range(len(last)) if row[t] < 0 and f - last_seen[t] > max_gap_frames]
                if free:
                    track = free[0]
                else:
                    track = len(last)
                    last.append(centres[f, present[pick]])
                    last_seen.append(f)
                    row.append(-1)
                row[track] = int(present[pick])
            for track, slot in enumerate(row):
                if slot >= 0:
                    last[track] = centres[f, slot]
                    last_seen[track] = f
        rows.append(row)
    width_k = max(slots, len(last))
    order = np.full((frames, width_k), -1, dtype=np.int64)
    for f, row in enumerate(rows):
        order[f, : len(row)] = row
    return order
