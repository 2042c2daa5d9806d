"""Left/right leg swaps: seen from the side, MediaPipe sometimes gives the left
knee, ankle, heel and foot the right leg's place and back a few frames later.

A frame is a *toggle* when assigning its legs the other way round is much closer
to the previous frame than the labels as given (``SWAP_RATIO``), the legs are
far enough apart for that to mean something (``LEGS_APART_OF_HEIGHT``), and the
hips did not switch too (then the person turned, or the whole body's labels did).
Frames between two toggles form a swapped run; runs up to ``max_run`` frames
are swapped back (image, world, visibility and presence of each pair), longer
ones and one left open at the end of the track are left as they are, so a
wrong toggle cannot flip the rest of a track.
"""

from __future__ import annotations

import warnings

import numpy as np

from pipeline.pose.skeleton import LANDMARK_NAMES

LEG_PAIRS = np.array(
    [
        (LANDMARK_NAMES.index(f"left_{name}"), LANDMARK_NAMES.index(f"right_{name}"))
        for name in ("knee", "ankle", "heel", "foot_index")
    ]
)
HIP_PAIR = (LANDMARK_NAMES.index("left_hip"), LANDMARK_NAMES.index("right_hip"))
SWAP_RATIO = 0.5  # the swapped assignment must be this much closer to the previous frame
LEGS_APART_OF_HEIGHT = 0.1  # mean left-right distance of the leg landmarks, share of the box height
MAX_SWAP_S = 0.5  # longest run swapped back
MAX_STEP_FRAMES = 3  # frames farther apart than this are not compared


def _cost(left, right, prev_left, prev_right) -> float:
    return float(np.linalg.norm(left - prev_left, axis=-1).sum() + np.linalg.norm(right - prev_right, axis=-1).sum())


def _hips_crossed(hips: np.ndarray, prev: int, t: int) -> bool:
    kept = _cost(hips[t, 0], hips[t, 1], hips[prev, 0], hips[prev, 1])
    return bool(_cost(hips[t, 1], hips[t, 0], hips[prev, 0], hips[prev, 1]) < kept)


def find_leg_swaps(xy_px: np.ndarray, frames: np.ndarray, max_run: int) -> np.ndarray:
    """bool [N]: the frames whose leg labels are swapped. ``xy_px [N, L, 2]`` pixel
    positions of one person's landmarks (NaN where absent), ``frames [N]`` their frame numbers."""
    n = xy_px.shape[0]
    left, right = xy_px[:, LEG_PAIRS[:, 0]], xy_px[:, LEG_PAIRS[:, 1]]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # absent rows stay NaN
        height = np.nanmax(xy_px[..., 1], axis=1) - np.nanmin(xy_px[..., 1], axis=1)
    hips = xy_px[:, list(HIP_PAIR)]
    swapped = np.zeros(n, dtype=bool)
    toggles = []
    state = False
    prev = -1
    for t in range(n):
        if np.isnan(left[t]).any() or np.isnan(right[t]).any():
            continue
        if prev >= 0 and frames[t] - frames[prev] <= MAX_STEP_FRAMES:
            # The labels as given switched between the two frames (the state accumulates).
            kept = _cost(left[t], right[t], left[prev], right[prev])
            crossed = _cost(right[t], left[t], left[prev], right[prev])
            apart = np.linalg.norm(left[prev] - right[prev], axis=-1).mean()
            # The hips switched too, here or by the next frame (where they pass each other):
            # the person turned, or the whole body's labels switched; not a leg swap.
            hips_crossed = any(_hips_crossed(hips, prev, u) for u in (t, t + 1) if u < n)
            if crossed < SWAP_RATIO * kept and apart >= LEGS_APART_OF_HEIGHT * height[prev] and not hips_crossed:
                state = not state
                toggles.append(t)
        elif prev >= 0:
            state = False  # a gap: start again from the labels as given
        swapped[t] = state
        prev = t
    # Keep only closed runs of at most max_run frames.
    out = np.zeros(n, dtype=bool)
    toggled = set(toggles)
    starts = np.flatnonzero(swapped & ~np.r_[False, swapped[:-1]]) if n else []
    for s in starts:
        e = s
        while e + 1 < n and (swapped[e + 1] or np.isnan(left[e + 1]).any() or np.isnan(right[e + 1]).any()):
            e += 1
        closed = e + 1 in toggled  # toggled back, not ended by a gap or the track's end
        if closed and frames[e] - frames[s] + 1 <= max_run:
            out[s : e + 1] = swapped[s : e + 1]
    return out


def swap_legs(mask: np.ndarray, *arrays: np.ndarray) -> None:
    """Swap the left and right leg landmarks of the rows in ``mask``, in place,
    in each of ``arrays`` (``[N, L, ...]``)."""
    rows = np.flatnonzero(mask)
    if not rows.size:
        return
    for values in arrays:
        left = values[rows[:, None], LEG_PAIRS[None, :, 0]].copy()
        values[rows[:, None], LEG_PAIRS[None, :, 0]] = values[rows[:, None], LEG_PAIRS[None, :, 1]]
        values[rows[:, None], LEG_PAIRS[None, :, 1]] = left
