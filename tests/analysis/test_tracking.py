"""Identity linking: the landmarker's slot order is not a person's identity."""

import numpy as np
import pytest

from pipeline.analysis.tracking import box_iou, link_identities, link_tracks, pack_lanes


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


def test_pack_lanes_shares_a_lane_between_spans_that_do_not_overlap():
    # [start, stop) spans: 0 and 2 touch without overlapping; 1 overlaps both; 3 starts first.
    spans = [(10, 20), (15, 30), (20, 25), (0, 12), (31, 40)]
    lanes = pack_lanes(spans)
    assert lanes == [1, 0, 1, 0, 0]
    for lane in set(lanes):  # within a lane, no two spans overlap
        held = sorted(span for span, k in zip(spans, lanes) if k == lane)
        assert all(a[1] <= b[0] for a, b in zip(held, held[1:]))
    assert pack_lanes([]) == []
    assert pack_lanes([(0, 5)] * 3) == [0, 1, 2]  # as many lanes as spans overlap at once


def test_persons_coming_and_going_share_lanes():
    """Ten persons one after the other, two at a time: the linked track has two lanes, and
    the person map gives each person's frames, as the dense order per person does."""
    frames, stay = 400, 40
    track = np.full((frames, 2, 33, 4), np.nan, dtype=np.float32)
    for k in range(10):
        start = k * stay
        for f in range(start, min(frames, start + stay)):
            for slot, x in enumerate((0.25, 0.75)):
                track[f, slot] = _person_at(x + 0.001 * (f - start), 0.5 + 0.3 * (k % 2))  # a new place each time
    linking = link_tracks(track, 100, 100, max_gap_frames=5)
    assert linking.persons == 20 and linking.order.shape == (frames, 2)
    assert ((linking.person >= 0) == (linking.order >= 0)).all()  # no gaps inside a person's frames here
    dense = link_identities(track, 100, 100, max_gap_frames=5)
    assert dense.shape == (frames, 20)
    for person in range(20):
        rows, lanes = np.nonzero(linking.person == person)
        assert len(rows) == stay and len(set(lanes.tolist())) == 1
        assert (linking.order[rows, lanes] == dense[rows, person]).all()
        assert (dense[np.setdiff1d(np.arange(frames), rows), person] == -1).all()
