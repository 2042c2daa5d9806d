"""Person identity across frames: MediaPipe returns the poses of a frame in no
particular order; this links them into tracks (slot k = the same person).

``link_tracks`` works in four steps, all on torso centres and landmark boxes:

1. frame by frame, detections are assigned to the live tracklets (Hungarian,
   within a speed gate); two detections of one person in a frame (close torso
   centres or overlapping boxes) are *duplicates*: the one a tracklet takes is
   kept, else the more visible one;
2. *ghosts* are dropped: a tracklet that, in most of its frames, overlaps a
   detection of a longer tracklet (the landmarker fitted a pose over one or two
   real people: a giant pose spanning both, a partial pose on one, a copy that
   drifted off) is not a person; the frames are linked again without it;
3. tracklets separated by a gap are *joined* when the later one starts where
   the earlier one could have got to (a gate growing with the gap, bounded):
   one person keeps one id through a loss;
4. the persons are *ordered*: id 0 is the main subject (``PERSON_ORDER``).

The linked track is laid out in *lanes*: a lane holds one person at a time,
persons whose spans (first to last frame) do not overlap share one, and
``Linking.person`` says whose each lane is in each frame. A video gives as
many lanes as persons are ever around at once, however many come and go in
its length, so memory is O(frames x lanes), not O(frames x persons).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np

# Landmarks that define where a person is: shoulders and hips.
_TORSO = np.array([11, 12, 23, 24])

# A detection farther from a track than this speed allows (body heights per
# second, the box height standing in for the body height) is another person.
MAX_SPEED_BH_S = 10.0
_UNASSIGNED = 1e9

# Two detections of one frame are one person when their torso centres are
# closer than this share of the taller box, or their boxes overlap this much (IoU).
DUPLICATE_DISTANCE_OF_HEIGHT = 0.25
DUPLICATE_IOU = 0.5
# A detection overlaps another when either torso centre lies in the other's box,
# or their intersection covers this share of the smaller box.
OVERLAP_OF_SMALLER = 0.4
# A tracklet overlapping a longer tracklet's detections in this share of its frames is a ghost.
# At 2/3, the full model with 6 slots on the sample kept a ghost that then took over the man's
# track after his drop from the box (3 persons for 2 people); at 1/2, 2.
GHOST_SHARE = 0.5
GHOST_PASSES = 3
# Joining tracklets across a gap: the gate grows at this speed (body heights per
# second) with the gap, up to this many body heights; gaps up to this many
# times ``max_gap_frames``.
# Measured on the sample: after his drop from the box the man is found again 2.4 body heights
# away 1.6 s later, which a cap of 1.5 split into two ids (one slot, both models); with 4 body
# heights/s up to 3, one id for each person with 1, 2 and 6 slots, lite and full models.
JOIN_SPEED_BH_S = 4.0
JOIN_MAX_BH = 3.0
JOIN_GAP_FACTOR = 4
JOIN_MAX_OVERLAP = 2
# A tracklet unseen for more frames than this is closed (joining bridges longer gaps):
# a short gap keeps a ghost's tracklet from running on into a real person's.
TRACKLET_GAP_FRAMES = 5
# Body height of a tracklet's end: median box height of this many detections.
_END_SAMPLES = 5
# Ordering: frame counts within this share are a tie, broken by the mean box height.
ORDER_TIE_SHARE = 0.1
PERSON_ORDER = "by frames tracked (within 10 % a tie, broken by the larger mean box height); too short to analyse last"


def person_boxes(image_xyzv: np.ndarray, width: int, height: int) -> np.ndarray:
    """Pixel boxes ``[..., 4]`` (x0, y0, x1, y1) around each person's landmarks; NaN if absent."""
    xy = image_xyzv[..., :2] * np.array([width, height], dtype=np.float32)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN slots stay NaN
        return np.concatenate([np.nanmin(xy, axis=-2), np.nanmax(xy, axis=-2)], axis=-1)


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU of boxes ``a [N, 4]`` and ``b [M, 4]`` -> ``[N, M]``."""
    inter, area_a, area_b = _intersection(a, b)
    union = area_a + area_b - inter
    return np.where(union > 0, inter / np.where(union > 0, union, 1), 0.0)


def _intersection(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    a = a[:, None, :]
    b = b[None, :, :]
    inter_w = np.clip(np.minimum(a[..., 2], b[..., 2]) - np.maximum(a[..., 0], b[..., 0]), 0, None)
    inter_h = np.clip(np.minimum(a[..., 3], b[..., 3]) - np.maximum(a[..., 1], b[..., 1]), 0, None)
    area_a = (a[..., 2] - a[..., 0]) * (a[..., 3] - a[..., 1])
    area_b = (b[..., 2] - b[..., 0]) * (b[..., 3] - b[..., 1])
    return inter_w * inter_h, area_a, area_b


def torso_centres(image_xyzv: np.ndarray, width: int, height: int) -> np.ndarray:
    """Pixel centre ``[..., 2]`` of shoulders and hips; NaN where the slot is empty."""
    xy = image_xyzv[..., _TORSO, :2] * np.array([width, height], dtype=np.float32)
    return xy.mean(axis=-2)


def _inside(points: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    """``[N, M]``: point n lies in box m."""
    x, y = points[:, None, 0], points[:, None, 1]
    return (x >= boxes[None, :, 0]) & (x <= boxes[None, :, 2]) & (y >= boxes[None, :, 1]) & (y <= boxes[None, :, 3])


def duplicate_pairs(centres: np.ndarray, boxes: np.ndarray) -> list[tuple[int, int]]:
    """Pairs ``(i, j)``, i < j, of one frame's detections (``[N, 2]``, ``[N, 4]``) that are one person."""
    n = len(centres)
    if n < 2:
        return []
    heights = boxes[:, 3] - boxes[:, 1]
    distance = np.linalg.norm(centres[:, None] - centres[None], axis=-1)
    same = (distance <= DUPLICATE_DISTANCE_OF_HEIGHT * np.maximum(heights[:, None], heights[None])) | (
        box_iou(boxes, boxes) >= DUPLICATE_IOU
    )
    return [(i, j) for i in range(n) for j in range(i + 1, n) if same[i, j]]


def overlapping(centres: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    """``[N, N]`` bool: detections of one frame that overlap (either torso centre in the
    other's box, or the intersection covers ``OVERLAP_OF_SMALLER`` of the smaller box)."""
    inside = _inside(centres, boxes)
    inter, area_a, area_b = _intersection(boxes, boxes)
    smaller = np.minimum(area_a, area_b)
    covered = np.where(smaller > 0, inter / np.where(smaller > 0, smaller, 1), 0.0) >= OVERLAP_OF_SMALLER
    out = inside | inside.T | covered
    np.fill_diagonal(out, False)
    return out


@dataclass(frozen=True)
class Linking:
    """Result of ``link_tracks``.

    - ``order`` int64 [F, N]: lane ``n`` takes the detection in slot
      ``order[f, n]`` of frame ``f``, or nothing where it is -1;
    - ``person`` int32 [F, N]: the id of the person lane ``n`` holds in frame
      ``f`` (from the person's first to last frame, gaps included), -1 where none;
    - ``persons``: how many persons (ids ``0 .. persons - 1``);
    - ``duplicates``: detections dropped as a second detection of a person;
    - ``ghosts``: detections dropped as ghost poses;
    - ``joined``: gaps bridged by joining two tracklets of one person.
    """

    order: np.ndarray
    person: np.ndarray
    persons: int
    duplicates: int = 0
    ghosts: int = 0
    joined: int = 0

    def counts(self) -> dict:
        return {
            "person_order": PERSON_ORDER,
            "duplicates_dropped": self.duplicates,
            "ghosts_dropped": self.ghosts,
            "tracklets_joined": self.joined,
        }


def _tracklets(centres, boxes, visibility, usable, max_gap_frames, fps, min_gate):
    """Frame-by-frame assignment. Returns tracklets (lists of (frame, slot)), and the
    number of duplicates dropped."""
    from scipy.optimize import linear_sum_assignment  # imported when used: the driver never needs scipy

    tracks: list[list[tuple[int, int]]] = []
    last: list[np.ndarray] = []
    last_seen: list[int] = []
    live: list[int] = []  # tracklets still open
    duplicates = 0
    for f in range(centres.shape[0]):
        present = np.flatnonzero(usable[f])
        if not present.size:
            continue
        live = [t for t in live if f - last_seen[t] <= max_gap_frames]
        pick_of: dict[int, int] = {}  # detection index -> tracklet
        cost = np.zeros((0, present.size))
        if live:
            elapsed = (f - np.array([last_seen[t] for t in live]))[:, None]
            box_h = boxes[f, present, 3] - boxes[f, present, 1]
            gate = np.maximum(MAX_SPEED_BH_S * box_h[None, :] * elapsed / fps, min_gate)
            distance = np.linalg.norm(
                np.array([last[t] for t in live])[:, None, :] - centres[f, present][None], axis=-1
            )
            cost = np.where(distance <= gate, distance, _UNASSIGNED)
            for row, pick in zip(*linear_sum_assignment(cost)):
                if cost[row, pick] < _UNASSIGNED:
                    pick_of[int(pick)] = int(row)
        dropped: set[int] = set()
        for i, j in duplicate_pairs(centres[f, present], boxes[f, present]):
            if i in dropped or j in dropped:
                continue
            if (i in pick_of) != (j in pick_of):  # keep the one that continues a tracklet
                drop = j if i in pick_of else i
            elif i in pick_of:  # both continue one: the farther one is not its person
                drop = j if cost[pick_of[j], j] > cost[pick_of[i], i] else i
            else:
                drop = j if visibility[f, present[i]] >= visibility[f, present[j]] else i
            dropped.add(drop)
            pick_of.pop(drop, None)
            duplicates += 1
        for pick, slot in enumerate(present):
            if pick in dropped:
                continue
            if pick in pick_of:
                track = live[pick_of[pick]]
            else:
                track = len(tracks)
                tracks.append([])
                last.append(centres[f, slot])
                last_seen.append(f)
            tracks[track].append((f, int(slot)))
            last[track] = centres[f, slot]
            last_seen[track] = f
        live = sorted({t for t in live} | {t for t in range(len(tracks)) if last_seen[t] == f})
    return tracks, duplicates


def _ghost_tracklets(tracks, centres, boxes) -> list[int]:
    """Tracklets that overlap a longer tracklet's detection in ``GHOST_SHARE`` of their frames."""
    owner: dict[tuple[int, int], int] = {(f, s): t for t, track in enumerate(tracks) for f, s in track}
    by_frame: dict[int, list[int]] = {}
    for f, s in owner:
        by_frame.setdefault(f, []).append(s)
    longer_overlap = np.zeros(len(tracks), dtype=np.int64)
    for f, slots in by_frame.items():
        if len(slots) < 2:
            continue
        slots = sorted(slots)
        over = overlapping(centres[f, slots], boxes[f, slots])
        for a, sa in enumerate(slots):
            ta = owner[(f, sa)]
            if any(over[a, b] and len(tracks[owner[(f, sb)]]) > len(tracks[ta]) for b, sb in enumerate(slots)):
                longer_overlap[ta] += 1
    return [t for t, track in enumerate(tracks) if longer_overlap[t] >= GHOST_SHARE * len(track)]


def _join(tracks, centres, boxes, max_join_gap, fps, min_gate) -> tuple[list[list[int]], int, int]:
    """Chains of tracklets (indices), joined across gaps. A tracklet may start up to
    ``JOIN_MAX_OVERLAP`` frames before the chain ends (the landmarker held both for a
    moment): those detections of it are dropped as duplicates. Returns the chains, the
    number of joins and of detections dropped. Edits ``tracks`` in place."""

    def ends(track, first: bool):
        picks = track[:_END_SAMPLES] if first else track[-_END_SAMPLES:]
        f, s = track[0] if first else track[-1]
        h = float(np.median([boxes[g, t, 3] - boxes[g, t, 1] for g, t in picks]))
        return f, centres[f, s], h

    chains: list[list[int]] = []
    chain_end: list[tuple[int, np.ndarray, float]] = []
    joined = dropped = 0
    for t in sorted(range(len(tracks)), key=lambda k: (tracks[k][0][0], k)):
        best, best_score = -1, np.inf
        for c, (end, end_centre, h_end) in enumerate(chain_end):
            after = [d for d in tracks[t] if d[0] > end]
            if not after or len(after) < len(tracks[t]) - JOIN_MAX_OVERLAP:
                continue
            start, centre, h_start = ends(after, True)
            gap = start - end
            if gap > max_join_gap:
                continue
            h = max(h_start, h_end)
            gate = max(min(JOIN_SPEED_BH_S * h * gap / fps, JOIN_MAX_BH * h), min_gate)
            score = float(np.linalg.norm(centre - end_centre)) / gate
            # Between candidates, a body height that changed less counts as much as a closer end.
            score_h = score + abs(np.log(max(h_start, 1.0) / max(h_end, 1.0)))
            if score <= 1.0 and score_h < best_score:
                best, best_score = c, score_h
        if best >= 0:
            end = chain_end[best][0]
            dropped += sum(1 for d in tracks[t] if d[0] <= end)
            tracks[t] = [d for d in tracks[t] if d[0] > end]
            chains[best].append(t)
            chain_end[best] = ends(tracks[t], False)
            joined += 1
        else:
            chains.append([t])
            chain_end.append(ends(tracks[t], False))
    return chains, joined, dropped


def _person_order(frames: list[int], heights: list[float], min_frames: int) -> list[int]:
    """Indices in id order (``PERSON_ORDER``): repeatedly the person with the most frames,
    a tie within ``ORDER_TIE_SHARE`` going to the taller one; too short ones last."""
    rest = list(range(len(frames)))
    out = []
    while rest:
        pool = [k for k in rest if frames[k] >= min_frames] or rest
        top = max(frames[k] for k in pool)
        tied = [k for k in pool if frames[k] >= (1 - ORDER_TIE_SHARE) * top]
        pick = max(tied, key=lambda k: (heights[k], frames[k], -k))
        out.append(pick)
        rest.remove(pick)
    return out


def link_tracks(
    image_xyzv: np.ndarray,
    width: int,
    height: int,
    max_gap_frames: int = 30,
    fps: float = 30.0,
    min_track_frames: int = 1,
) -> Linking:
    """Tracks of people across frames (the module's four steps).

    ``image_xyzv`` is ``[F, P, L, 4]``. Each frame's detections are assigned to
    the open tracklets' last torso centres by minimum total distance, within a
    gate of ``MAX_SPEED_BH_S`` body heights per second; a tracklet unseen for
    more than ``max_gap_frames`` frames is closed. Persons with fewer than
    ``min_track_frames`` detections are ordered last.
    """
    frames = image_xyzv.shape[0]
    centres = torso_centres(image_xyzv, width, height)
    boxes = person_boxes(image_xyzv, width, height)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        visibility = np.nanmean(image_xyzv[..., 3], axis=-1)
    usable = ~np.isnan(centres[..., 0]) & ~np.isnan(boxes[..., 0])
    min_gate = 0.02 * float(np.hypot(width, height))
    gap = min(max_gap_frames, TRACKLET_GAP_FRAMES)
    tracks, duplicates = _tracklets(centres, boxes, visibility, usable, gap, fps, min_gate)
    ghost_count = 0
    for _ in range(GHOST_PASSES):  # without the ghosts, the rest may link differently: look again
        ghosts = _ghost_tracklets(tracks, centres, boxes)
        if not ghosts:
            break
        for t in ghosts:
            ghost_count += len(tracks[t])
            for f, s in tracks[t]:
                usable[f, s] = False
        tracks, duplicates = _tracklets(centres, boxes, visibility, usable, gap, fps, min_gate)
    chains, joined, overlaps = _join(tracks, centres, boxes, JOIN_GAP_FACTOR * max_gap_frames, fps, min_gate)
    duplicates += overlaps
    counts = [sum(len(tracks[t]) for t in chain) for chain in chains]
    heights = [
        float(np.mean([boxes[f, s, 3] - boxes[f, s, 1] for t in chain for f, s in tracks[t]])) for chain in chains
    ]
    persons = [
        sorted(d for t in chains[c] for d in tracks[t]) for c in _person_order(counts, heights, min_track_frames)
    ]
    spans = [(found[0][0], found[-1][0] + 1) for found in persons]
    lanes = pack_lanes(spans)
    width = max([image_xyzv.shape[1], *(lane + 1 for lane in lanes)])
    order = np.full((frames, width), -1, dtype=np.int64)
    person = np.full((frames, width), -1, dtype=np.int32)
    for k, (found, lane, (start, stop)) in enumerate(zip(persons, lanes, spans)):
        f, s = np.array(found).T
        order[f, lane] = s
        person[start:stop, lane] = k
    return Linking(order, person, len(persons), duplicates, ghost_count, joined)


def pack_lanes(spans: list[tuple[int, int]]) -> list[int]:
    """The lane of each ``[start, stop)`` span: in order of start (then of index), the
    lowest lane free by then. The fewest lanes that hold the spans: as many as overlap at once."""
    lanes: list[int] = [0] * len(spans)
    ends: list[int] = []  # per lane, where its last span stops
    for k in sorted(range(len(spans)), key=lambda k: (spans[k][0], k)):
        start, stop = spans[k]
        free = next((lane for lane, end in enumerate(ends) if end <= start), len(ends))
        if free == len(ends):
            ends.append(stop)
        else:
            ends[free] = stop
        lanes[k] = free
    return lanes


def link_identities(
    image_xyzv: np.ndarray, width: int, height: int, max_gap_frames: int = 30, fps: float = 30.0
) -> np.ndarray:
    """``[F, P]``: person ``k`` takes the detection in slot ``order[f, k]`` of frame ``f``,
    or nothing where it is -1 (``link_tracks`` with one column per person, not per lane)."""
    linking = link_tracks(image_xyzv, width, height, max_gap_frames, fps)
    return by_person(linking.order, linking.person, linking.persons, -1)


def by_person(values: np.ndarray, person: np.ndarray, persons: int, fill) -> np.ndarray:
    """``values [F, N, ...]`` laid out in lanes (``person [F, N]``) as ``[F, persons, ...]``,
    one column per person id, ``fill`` where a person is not around. For small tracks
    and tests: the size grows with the persons, which ``Linking`` avoids."""
    out = np.full((values.shape[0], max(persons, 1), *values.shape[2:]), fill, dtype=values.dtype)
    rows, lanes = np.nonzero(person >= 0)
    out[rows, person[rows, lanes]] = values[rows, lanes]
    return out
