"""Handing the people a chunk tracks over to the next chunk.

A chunk's tracker starts with no state, and MediaPipe's detector is much weaker
than its tracker: a chunk that starts cold misses, for a while, people that a
sequential run was still following (``bench/reacquire.py`` measures it: on the
sample clip a cold start needs 0 to 115 frames, median 20, to have every
person the sequential loop has). So each chunk keeps tracking past its end
(its *tail*) while a second tracker, started exactly as the next chunk's
(same first frame, same timestamps, no state), runs beside it: the *shadow*.
Once both have the same people at the same places for ``HANDOVER_FRAMES``
frames running, the next chunk's tracker, which the shadow reproduces, has
caught up, and the tail stops. The tail's rows replace the next chunk's first
rows (:func:`stitch`), so every frame of the video is covered by a tracker that
is as far along as a sequential run's.

The tail adapts to the video: it is as long as the next chunk needs, at most
``pipeline.video.plan.MAX_HANDOVER_S`` seconds (``ChunkSpec.tail_limit``). A tail that reaches that cap without agreement is
reported (``Handover.settled`` false): the stitched track may miss there a
person that a sequential run keeps.

Everything here depends on the frames and the chunk plan only, never on which
worker ran what or when.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from pipeline.pose.backends import FramePoses
from pipeline.pose.types import Handover, PoseChunk

__all__ = ["HANDOVER_FRAMES", "HANDOVER_SCORE_TOLERANCE", "HANDOVER_TOLERANCE", "Handover", "same_people", "stitch"]

# Frames running on which the shadow must agree with the chunk's tracker. Measured on the sample
# clip (bench/reacquire.py, 76 cold starts): after 1 agreeing frame, 50 of them disagreed again
# later; after 3, 4 (single frames); after 5, 4; so 5, which adds 2 frames to the mean tail.
HANDOVER_FRAMES = 5
# Two trackers agree on a person when the mean distance of the landmarks is below this share of
# the frame diagonal (the equivalence measure of the project, tests/engines/test_equivalence.py)
# and every landmark's visibility and presence are within HANDOVER_SCORE_TOLERANCE. The scores
# matter: MediaPipe filters them over time (the visibility filter keeps 90 % of its state a frame),
# and a tracker whose positions agree but whose filters have not caught up loses or keeps a
# person at other frames than a sequential run. With positions alone, one slot on the sample's
# two people kept 92 % of the loop's person-frames with chunks of 40; with the scores, 100 %.
HANDOVER_TOLERANCE = 0.01
HANDOVER_SCORE_TOLERANCE = 0.01


def same_people(a: FramePoses, b: FramePoses, width: int, height: int) -> bool:
    """Whether two trackers found the same people in one frame: as many persons,
    paired one to one with mean landmark distances within ``HANDOVER_TOLERANCE``
    of the frame diagonal, and visibilities and presences within
    ``HANDOVER_SCORE_TOLERANCE``."""
    if a.num_persons != b.num_persons:
        return False
    if a.num_persons == 0:
        return True
    from scipy.optimize import linear_sum_assignment  # imported when used: the driver never needs scipy

    scale = np.array([width, height], dtype=np.float64)
    xy_a = a.image_xyzv[:, :, :2].astype(np.float64) * scale
    xy_b = b.image_xyzv[:, :, :2].astype(np.float64) * scale
    with np.errstate(invalid="ignore"):
        cost = np.nanmean(np.linalg.norm(xy_a[:, None] - xy_b[None, :], axis=-1), axis=-1)
    cost = np.where(np.isfinite(cost), cost, np.inf)
    limit = HANDOVER_TOLERANCE * float(np.hypot(width, height))
    rows, cols = linear_sum_assignment(np.where(np.isfinite(cost), cost, 1e12))
    if not np.all(cost[rows, cols] <= limit):
        return False
    scores = np.abs(
        np.concatenate(
            [
                (a.image_xyzv[rows, :, 3] - b.image_xyzv[cols, :, 3]).ravel(),
                (a.presence[rows] - b.presence[cols]).ravel(),
            ]
        )
    )
    scores = scores[np.isfinite(scores)]
    return bool(scores.size == 0 or scores.max() <= HANDOVER_SCORE_TOLERANCE)


def stitch(chunks: Sequence[PoseChunk]) -> tuple[PoseChunk, dict]:
    """One track from a video's chunks, in plan order, each holding its own
    frames and its tail (``PoseChunk.handover``).

    Every frame is taken from the earliest chunk that holds it: a tail replaces
    the next chunk's first rows, the frames where that chunk's tracker was still
    catching up. Chunks may hold different numbers of person slots (each keeps
    those it used); the track has the most of them. Returns the track and a
    report: boundaries, frames tracked twice, unsettled handovers.
    """
    if not chunks:
        raise ValueError("expected at least one chunk, got none")
    slots = max(c.num_slots for c in chunks)
    parts, covered = [], None
    boundaries = overlap = unsettled = 0
    for i, chunk in enumerate(chunks):
        if not chunk.num_frames:
            continue
        first = int(chunk.frame_index[0])
        skip = 0 if covered is None else max(0, covered - first)
        if skip < chunk.num_frames:
            parts.append(chunk.slice(skip).with_slots(slots))
        covered = max(covered or 0, first + chunk.num_frames)
        handover = chunk.handover
        if handover is not None and i < len(chunks) - 1:
            boundaries += 1
            overlap += handover.tail
            unsettled += not handover.settled
    report = {"chunks": len(chunks), "boundaries": boundaries, "overlap_frames": overlap, "unsettled": unsettled}
    return PoseChunk.concatenate(parts), report
