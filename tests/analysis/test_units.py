"""Real-world units (``--person_height``) and the centre of mass' height above the
ground the person stands on, on the sample clip's real track and on exact series."""

from __future__ import annotations

import numpy as np
import pytest

from pipeline.analysis.analyzer import Analyzer, TrackMeta
from pipeline.analysis.events import EventParams, Flight, support_level

FPS = 30.0
HEIGHT_M = 1.8


@pytest.fixture(scope="module")
def analysed(sequential_track):
    """The sample's two persons analysed without a height, and with one for person 0 only."""
    track, meta = sequential_track(2)
    plain = Analyzer()(track, meta)
    scaled = Analyzer()(track, TrackMeta(meta.width, meta.height, meta.fps, heights_m=((0, HEIGHT_M),)))
    return plain, scaled


def _person(analysis, ident: int) -> dict:
    return next(p for p in analysis.summary["persons"] if p["id"] == ident)


def test_support_level_follows_a_box_then_the_floor():
    """Standing on a box (row 400) for 1 s, a drop of 0.3 s, the floor (row 600) for 1 s:
    the level is the box's until the landing, then the floor's."""
    box, floor = [400.0] * 30, [600.0] * 30
    flight = list(np.linspace(395.0, 600.0, 10))  # a hop off the box and the fall
    foot = np.array(box + flight + floor)
    times = np.arange(len(foot)) / FPS
    landing = len(box) + len(flight)
    drop = Flight("drop", len(box) - 1, len(box), landing, 0.33, 0.0, 1.0)
    level = support_level(foot, times, 200.0, EventParams(), [drop])
    assert np.all(level[: len(box)] == 400.0)
    assert np.all(level[landing:] == 600.0)
    # In the air the level is the box's, except where the foot is already lower (falling past it).
    air = slice(len(box), landing)
    assert np.all(level[air] == np.fmax(400.0, foot[air]))


def test_support_level_without_a_still_foot_is_the_usual_lowest_row():
    foot = 500.0 + 50.0 * np.sin(np.arange(60) / FPS * 2 * np.pi * 2)  # never still
    level = support_level(foot, np.arange(60) / FPS, 200.0, EventParams(), [])
    assert np.allclose(level, np.fmax(np.percentile(foot, 95), foot))


def test_centre_of_mass_height_on_the_box_is_measured_from_the_box(analysed):
    """The man stands and hops on a box for most of the clip, then steps down: his centre
    of mass is about half his height above what he stands on, on the box and on the floor
    (measured from the lowest foot row of the whole clip it read 1.75 body heights)."""
    plain, _ = analysed
    com = plain.of_person("com_height_bh", 0)
    frames = plain.track.frame_index
    on_box = com[(frames >= 10) & (frames < 150)]
    on_floor = com[frames >= 215]
    assert 0.45 < np.nanmedian(on_box) < 0.7
    assert 0.4 < np.nanmedian(on_floor) < 0.7
    assert np.nanpercentile(on_box, 95) < 0.8


def test_person_height_gives_metres(analysed):
    plain, scaled = analysed
    person = _person(scaled, 0)
    body_px = scaled.body_height_px[0]
    assert person["scale"] == {"height_m": HEIGHT_M, "metres_per_px": round(HEIGHT_M / body_px, 8), "source": "given"}
    # Every figure in body heights has its twin in metres, scaled by the height given.
    for name, stats in person["speed_bh_s"].items():
        twin = person["speed_m_s"][name]
        assert (stats is None) == (twin is None)
        if stats is not None:
            assert twin["max"] == pytest.approx(stats["max"] * HEIGHT_M, abs=2e-3)
    assert person["com_height_m"]["mean"] == pytest.approx(person["com_height_bh"]["mean"] * HEIGHT_M, abs=2e-3)
    jumps = [e for e in scaled.events if e["type"] == "jump" and e["person"] == 0]
    assert jumps and all(e["com_rise_m"] == pytest.approx(e["com_rise_bh"] * HEIGHT_M, abs=1e-3) for e in jumps)
    assert all(e["heights_agree"] is not None for e in jumps)
    # Person 1 has no height: body heights only, as without --person_height.
    other = _person(scaled, 1)
    assert other["scale"] is None and "speed_m_s" not in other
    assert all(e["com_rise_m"] is None for e in scaled.events if e["type"] == "jump" and e["person"] == 1)
    # Without heights nothing changes but the metres: the same series, events in body heights.
    assert _person(plain, 0)["scale"] is None
    assert np.array_equal(plain.com_height_bh, scaled.com_height_bh, equal_nan=True)
    assert [e["com_rise_bh"] for e in plain.events if e["type"] == "jump"] == [
        e["com_rise_bh"] for e in scaled.events if e["type"] == "jump"
    ]
