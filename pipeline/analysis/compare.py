"""Compare two pose runs of the same video frame by frame (used to check that a
distributed run reproduces a sequential one)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from pipeline.analysis.tracking import box_iou, person_boxes
from pipeline.pose.types import PoseChunk

SAME_PERSON_IOU = 0.5


@dataclass(frozen=True)
class RunComparison:
    """``distance_px`` holds, for every person found in both runs in the same
    frame (boxes overlapping with IoU >= 0.5), the mean landmark distance."""

    frames_a: int
    frames_b: int
    frame_index_equal: bool
    detections_a: int
    detections_b: int
    distance_px: np.ndarray
    diagonal_px: float

    def share_within(self, fraction_of_diagonal: float) -> float:
        """Of the persons found in both runs, the share within ``fraction_of_diagonal`` of each other."""
        if self.distance_px.size == 0:
            return 0.0
        return float(np.mean(self.distance_px < fraction_of_diagonal * self.diagonal_px))

    def share_of_a_within(self, fraction_of_diagonal: float) -> float:
        """Of run ``a``'s person-frames, the share that ``b`` has within ``fraction_of_diagonal``
        (the strict measure: a person ``b`` misses counts against it)."""
        if self.detections_a == 0:
            return 1.0
        return int(np.sum(self.distance_px < fraction_of_diagonal * self.diagonal_px)) / self.detections_a


def compare_runs(a: PoseChunk, b: PoseChunk, width: int, height: int) -> RunComparison:
    from scipy.optimize import linear_sum_assignment  # imported when used: the driver never needs scipy

    scale = np.array([width, height], dtype=np.float32)
    boxes_a = person_boxes(a.image_xyzv, width, height)
    boxes_b = person_boxes(b.image_xyzv, width, height)
    distances = []
    for f in range(min(a.num_frames, b.num_frames)):
        ia = np.where(a.detected[f])[0]
        ib = np.where(b.detected[f])[0]
        if ia.size == 0 or ib.size == 0:
            continue
        xy_a = a.image_xyzv[f, ia, :, :2] * scale
        xy_b = b.image_xyzv[f, ib, :, :2] * scale
        cost = np.linalg.norm(xy_a[:, None] - xy_b[None, :], axis=-1).mean(axis=-1)
        iou = box_iou(boxes_a[f, ia], boxes_b[f, ib])
        for r, c in zip(*linear_sum_assignment(cost)):
            if iou[r, c] >= SAME_PERSON_IOU:
                distances.append(cost[r, c])
    return RunComparison(
        frames_a=a.num_frames,
        frames_b=b.num_frames,
        frame_index_equal=bool(np.array_equal(a.frame_index, b.frame_index)),
        detections_a=int(a.detected.sum()),
        detections_b=int(b.detected.sum()),
        distance_px=np.asarray(distances, dtype=np.float64),
        diagonal_px=float(np.hypot(width, height)),
    )
