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


def _costs(left, right, prev_left, prev_right) -> np.ndarray:
    """Per row: how far the pairs ``left``/``right`` ``[N, K, 2]`` moved from ``prev_*`` (summed over K)."""
    return np.linalg.norm(left - prev_left, axis=-1).sum(axis=-1) + np.linalg.norm(right - prev_right, axis=-1).sum(
        axis=-1
    )


def _hips_crossed(hips: np.ndarray, prev: np.ndarray, now: np.ndarray) -> np.ndarray:
    """Per pair of rows ``prev``/``now``: the hips are closer to the previous row's with left and right exchanged."""
    kept = _costs(hips[now, :1], hips[now, 1:], hips[prev, :1], hips[prev, 1:])
    return _costs(hips[now, 1:], hips[now, :1], hips[prev, :1], hips[prev, 1:]) < kept


def find_leg_swaps(xy_px: np.ndarray, frames: np.ndarray, max_run: int) -> np.ndarray:
    """bool [N]: the frames whose leg labels are swapped. ``xy_px [N, L, 2]`` pixel
    positions of one person's landmarks (NaN where absent), ``frames [N]`` their frame numbers."""
    n = xy_px.shape[0]
    left, right = xy_px[:, LEG_PAIRS[:, 0]], xy_px[:, LEG_PAIRS[:, 1]]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # absent rows stay NaN
        height = np.nanmax(xy_px[..., 1], axis=1) - np.nanmin(xy_px[..., 1], axis=1)
    hips = xy_px[:, list(HIP_PAIR)]
    legs_seen = ~(np.isnan(left).any(axis=(1, 2)) | np.isnan(right).any(axis=(1, 2)))
    # Each frame with both legs is compared with the previous such frame (when close enough in time).
    seen = np.flatnonzero(legs_seen)
    now, prev = seen[1:], seen[:-1]
    close = frames[now] - frames[prev] <= MAX_STEP_FRAMES
    kept = _costs(left[now], right[now], left[prev], right[prev]).astype(np.float64)
    crossed = _costs(right[now], left[now], left[prev], right[prev]).astype(np.float64)
    apart = np.linalg.norm(left[prev] - right[prev], axis=-1).mean(axis=-1)
    # The hips switched too, here or by the next frame (where they pass each other):
    # the person turned, or the whole body's labels switched; not a leg swap.
    hips_crossed = _hips_crossed(hips, prev, now)
    following = now + 1 < n
    hips_crossed[following] |= _hips_crossed(hips, prev[following], now[following] + 1)
    # The labels as given switched between the two frames (the state accumulates).
    toggle = close & (crossed < SWAP_RATIO * kept) & (apart >= LEGS_APART_OF_HEIGHT * height[prev]) & ~hips_crossed
    swapped = np.zeros(n, dtype=bool)
    toggles = []
    state = False
    for k, t in enumerate(now.tolist()):
        if not close[k]:
            state = False  # a gap: start again from the labels as given
        elif toggle[k]:
            state = not state
            toggles.append(t)
        swapped[t] = state
    # Keep only closed runs of at most max_run frames.
    out = np.zeros(n, dtype=bool)
    toggled = set(toggles)
    starts = np.flatnonzero(swapped & ~np.r_[False, swapped[:-1]]) if n else []
    for s in starts:
        e = s
        while e + 1 < n and (swapped[e + 1] or not legs_seen[e + 1]):
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
