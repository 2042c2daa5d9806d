"""One person is one id, on real tracks of the sample clip (a man jumping on a
box, then off it; a woman walking past): duplicates, ghost poses and gaps must
not split or multiply the people; left/right leg swaps are corrected."""

from __future__ import annotations

import numpy as np
import pytest

from pipeline.analysis.analyzer import Analyzer
from pipeline.analysis.swaps import LEG_PAIRS
from pipeline.analysis.tracking import PERSON_ORDER, _person_order, by_person, link_tracks

MAN, WOMAN = 0, 1


def analysed(summary: dict) -> list[dict]:
    return [p for p in summary["persons"] if p["analysed"]]


def jumps(analysis, person: int) -> list[tuple[int, int]]:
    return [
        (e["takeoff_frame"], e["landing_frame"])
        for e in analysis.events
        if e["type"] == "jump" and e["person"] == person
    ]


@pytest.fixture(scope="module")
def box_jumps(sequential_track) -> list[tuple[int, int]]:
    """The man's four jumps on the box as the single-person run finds them: its jumps
    higher than 10 cm (it also finds two 3 cm hops, at frames 122 and 146)."""
    analysis = Analyzer()(*sequential_track(1))
    found = [
        (e["takeoff_frame"], e["landing_frame"])
        for e in analysis.events
        if e["type"] == "jump" and e["person"] == MAN and e["height_m"] > 0.1
    ]
    assert found == [(29, 38), (46, 59), (63, 74), (90, 102)]
    return found


@pytest.mark.parametrize("num_poses", [2, 6])
def test_two_people_are_two_ids(sequential_track, num_poses):
    analysis = Analyzer()(*sequential_track(num_poses))
    summary = analysis.summary
    assert summary["persons_found"] == 2
    persons = analysed(summary)
    assert [p["id"] for p in persons] == [MAN, WOMAN]
    man, woman = persons
    # The man is tracked from his first frames on the box to his run off the right edge;
    # the woman from entering on the right to leaving on the left.
    assert man["first_frame"] <= 5 and man["last_frame"] >= 225 and man["frames_detected"] >= 200
    assert 55 <= woman["first_frame"] <= 60 and woman["last_frame"] == 206 and woman["frames_detected"] >= 140
    # Each frame holds the man at most once, the woman at most once: no duplicate kept.
    assert summary["max_persons_in_frame"] <= 2 + sum(not p["analysed"] for p in summary["persons"])
    tracking = summary["tracking"]
    assert tracking["duplicates_dropped"] > 0 and tracking["ghosts_dropped"] > 0 and tracking["tracklets_joined"] >= 1
    assert summary["person_order"] == PERSON_ORDER


@pytest.mark.parametrize("num_poses", [2, 6])
def test_the_man_keeps_his_four_jumps(sequential_track, box_jumps, num_poses):
    analysis = Analyzer()(*sequential_track(num_poses))
    found = jumps(analysis, MAN)
    for takeoff, landing in box_jumps:
        near = [(t, land) for t, land in found if abs(t - takeoff) <= 2 and abs(land - landing) <= 6]
        assert len(near) == 1, f"jump {takeoff}-{landing} not found once in {found}"


def test_linking_alone_leaves_two_tracks_long_enough_to_analyse(sequential_track):
    """``link_tracks`` itself, with six poses a frame: two tracks of at least 5 frames
    (the plain frame-to-frame linking gave four, plus two short ones)."""
    track, meta = sequential_track(6)
    linking = link_tracks(track.image_xyzv, meta.width, meta.height, 30, meta.fps, 5)
    per_id = (by_person(linking.order, linking.person, linking.persons, -1) >= 0).sum(axis=0)
    assert (per_id >= 5).sum() == 2
    assert linking.ghosts > 0


def test_persons_are_ordered_by_frames_then_height():
    frames = [100, 95, 40, 3, 120]
    heights = [300.0, 400.0, 500.0, 900.0, 200.0]
    # 120 first; 100 and 95 are within 10 % of each other: the taller (95 frames) goes first;
    # the 3-frame one is too short for 5 and goes last whatever its height.
    assert _person_order(frames, heights, 5) == [4, 1, 0, 2, 3]
    assert _person_order([100, 99], [300.0, 301.0], 5) == [1, 0]


def test_persons_too_short_to_analyse_come_last(sequential_track):
    summary = Analyzer()(*sequential_track(6)).summary
    flags = [p["analysed"] for p in summary["persons"]]
    assert flags == sorted(flags, reverse=True) and not all(flags)
    counts = [p["frames_detected"] for p in analysed(summary)]
    assert counts == sorted(counts, reverse=True)


def _swap_legs_of(track, rows, slots):
    for values in (track.image_xyzv, track.world_xyz, track.presence):
        left = values[rows, slots][:, LEG_PAIRS[:, 0]].copy()
        values[rows[:, None], slots[:, None], LEG_PAIRS[None, :, 0]] = values[rows, slots][:, LEG_PAIRS[:, 1]]
        values[rows[:, None], slots[:, None], LEG_PAIRS[None, :, 1]] = left


def test_an_injected_leg_swap_is_corrected(sequential_track):
    """Frames 50-59: the man stands on the box with his legs apart at both ends of the run
    (at frames 100-104 his legs are together: a swap there cannot be seen, nor needs to be)."""
    track, meta = sequential_track(2)
    clean = Analyzer()(track, meta)
    rows = np.arange(50, 60)
    linking = link_tracks(track.image_xyzv, meta.width, meta.height, 30, meta.fps, 5)
    slots = by_person(linking.order, linking.person, linking.persons, -1)[rows, MAN]
    assert (slots >= 0).all()
    swapped = type(track)(
        **{
            name: getattr(track, name).copy()
            for name in ("frame_index", "timestamp_ms", "sampled", "image_xyzv", "world_xyz", "presence", "decoded")
        }
    )
    _swap_legs_of(swapped, rows, slots)
    assert not np.array_equal(swapped.image_xyzv, track.image_xyzv)
    fixed = Analyzer()(swapped, meta)
    before = clean.summary["persons"][MAN]["quality"]["left_right_swaps_corrected"]
    after = fixed.summary["persons"][MAN]["quality"]["left_right_swaps_corrected"]
    assert after == before + len(rows)
    np.testing.assert_array_equal(fixed.angles, clean.angles)
    np.testing.assert_array_equal(fixed.track.image_xyzv, clean.track.image_xyzv)


def test_clean_tracks_get_few_swap_corrections(sequential_track):
    """Measured: the single-person run needs none; with two poses the man and the woman
    (walking side-on) get 16 frames each, in runs of at most half a second."""
    single = Analyzer()(*sequential_track(1)).summary
    assert single["persons_found"] == 2  # one slot: the landmarker goes from the man to the woman and back
    assert [p["quality"]["left_right_swaps_corrected"] for p in analysed(single)] == [0, 0]
    two = Analyzer()(*sequential_track(2)).summary
    assert [p["quality"]["left_right_swaps_corrected"] for p in analysed(two)] == [16, 16]
