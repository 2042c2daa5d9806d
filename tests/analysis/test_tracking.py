"""Identity linking: the landmarker's slot order is not a person's identity."""

import numpy as np
import pytest

from pipeline.analysis.tracking import box_iou, link_identities


def _person_at(x: float, y: float) -> np.ndarray:
    lm = np.zeros((33, 4), dtype=np.float32)
    lm[:, 0] = x
    lm[:, 1] = y
    lm[:, 3] = 1.0
    return lm


def test_link_identities_undoes_slot_swaps():
    frames = 6
    track = np.full((frames, 2, 33, 4), np.nan, dtype=np.float32)
    for f in range(frames):
        a, b = _person_at(0.2 + 0.01 * f, 0.5), _person_at(0.8 - 0.01 * f, 0.5)
        track[f] = [a, b] if f % 2 == 0 else [b, a]  # the landmarker's order flips
    order = link_identities(track, 100, 100)
    linked = track[np.arange(frames)[:, None], order]
    assert np.all(np.diff(linked[:, 0, 0, 0]) > 0)  # slot 0 keeps moving right
    assert np.all(np.diff(linked[:, 1, 0, 0]) < 0)


def test_box_iou():
    boxes = np.array([[0, 0, 10, 10], [5, 0, 15, 10]], dtype=float)
    iou = box_iou(boxes, boxes)
    assert iou[0, 0] == pytest.approx(1.0)
    assert iou[0, 1] == pytest.approx(50 / 150)
