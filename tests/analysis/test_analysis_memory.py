"""The analysis of a long video holds the track once, not a copy per step.

The real track of the sample clip (both people, image and world landmarks, lite
model) is repeated to 5 minutes at 30 fps, as ``bench/`` builds its long clip,
saved in chunks as the workers save them, and analysed as the Ray actor does it
(``AnalyzerActor.analyze_stored``, here in-process). ``tracemalloc`` sees every
numpy buffer, so the peak is exact and the same on every machine.
"""

from __future__ import annotations

import tracemalloc
from pathlib import Path

import numpy as np
import pytest

from pipeline.analysis.analyzer import AnalysisParams, Analyzer, TrackMeta
from pipeline.analysis.store import AnalysisStore
from pipeline.engines.ray_engine import AnalyzerActor
from pipeline.outputs.report import MAX_PLOTTED_PERSONS, plotted_persons, write_report
from pipeline.pose import MediaPipeSettings, track_chunk
from pipeline.pose.types import PoseChunk
from pipeline.video.plan import ChunkSpec
from pipeline.video.probe import probe_video
from pipeline.workdir import load_track, save_chunk

REPEATS = 40  # 230 frames x 40 = 9,200 frames: 5 minutes at 30 fps
CHUNK_FRAMES = 1800
# Per frame and lane of the linked track (the repeats' seams give 4 persons here): the linked
# track is 1,056 bytes (float32 landmarks). The peak measures about 2,600 bytes; it was
# about 4,200 while the unlinked track, its linked copy and every intermediate series
# were held at once.
PEAK_BYTES_PER_FRAME_SLOT = 3_200


@pytest.fixture(scope="module")
def long_track(sample_video, lite_model) -> tuple[PoseChunk, TrackMeta]:
    info = probe_video(str(sample_video))
    spec = ChunkSpec(str(sample_video), 0, 0, info.frame_count, 0, info.fps, None, True)
    settings = MediaPipeSettings(model_path=lite_model.path, model_sha256=lite_model.sha256, num_poses=2)
    clip = track_chunk(spec, settings)
    assert clip.num_frames == info.frame_count and clip.detected.any(axis=0).all()  # both slots hold people
    frames = clip.num_frames * REPEATS
    track = PoseChunk.empty(0, frames, clip.num_slots, info.fps)
    for name in ("image_xyzv", "world_xyz", "presence"):
        getattr(track, name)[:] = np.concatenate([getattr(clip, name)] * REPEATS)
    return track, TrackMeta(info.width, info.height, info.fps)


def _analyse_stored(track: PoseChunk, meta: TrackMeta, folder) -> tuple[dict, int]:
    """``track`` saved in chunks and analysed as the Ray actor does it, into ``folder / "analysis"``:
    the summary, and the ``tracemalloc`` peak of the analysis."""
    records = [
        save_chunk(folder / f"chunk-{i:03d}.npz", i, track.slice(start, start + CHUNK_FRAMES))
        for i, start in enumerate(range(0, track.num_frames, CHUNK_FRAMES))
    ]
    assert load_track(records).num_frames == track.num_frames
    actor = AnalyzerActor(AnalysisParams())
    tracemalloc.start()
    try:
        summary = actor.analyze_stored(records, meta, str(folder / "analysis"))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return summary, peak


def test_linking_then_analysing_is_the_whole_analysis(long_track):
    track, meta = long_track
    analyzer = Analyzer(AnalysisParams())
    whole = analyzer(track, meta)
    linked, person, tracking = analyzer.link_counted(track, meta)
    split = analyzer.analyze_linked(linked, meta, tracking, person)
    assert whole.summary == split.summary and whole.events == split.events
    np.testing.assert_array_equal(whole.landmarks_px, split.landmarks_px)
    np.testing.assert_array_equal(whole.angles, split.angles)
    analysed = [p["analysed"] for p in whole.summary["persons"]]
    assert analysed[0] and analysed == sorted(analysed, reverse=True)  # too short ones are reported last


def test_stored_analysis_of_a_long_track_peaks_below_its_budget(long_track, tmp_path):
    track, meta = long_track
    summary, peak = _analyse_stored(track, meta, tmp_path)
    stored = AnalysisStore(tmp_path / "analysis")
    assert stored.num_frames == track.num_frames and stored.summary == summary
    slots = stored.read(0, 1).track.num_slots
    budget = PEAK_BYTES_PER_FRAME_SLOT * track.num_frames * slots
    assert peak < budget, f"analysis peaked at {peak / 2**20:.1f} MiB, budget {budget / 2**20:.1f} MiB"


APART = 15  # repeats of the clip with a pause between them: new persons each time
PAUSE_FRAMES = 150  # longer than linking bridges (4 x 30 frames)


@pytest.fixture(scope="module")
def coming_and_going(long_track) -> tuple[PoseChunk, PoseChunk, TrackMeta]:
    """The sample's track alone, and repeated ``APART`` times with an empty pause after each repeat."""
    track, meta = long_track
    clip = track.slice(0, track.num_frames // REPEATS)
    stride = clip.num_frames + PAUSE_FRAMES
    apart = PoseChunk.empty(0, stride * APART, clip.num_slots, meta.fps)
    for r in range(APART):
        for name in ("image_xyzv", "world_xyz", "presence"):
            getattr(apart, name)[r * stride : r * stride + clip.num_frames] = getattr(clip, name)
    return clip, apart, meta


def test_persons_who_come_and_go_share_lanes_and_keep_their_values(coming_and_going):
    """Each repeat brings new persons. They share the lanes (as many as are around at once),
    and the first repeat's persons have the values they have in the clip alone: a person's
    analysis does not depend on who else the video holds. (Later repeats see the same
    landmarks at other times, whose float steps differ in the last bits: their positions
    and angles agree, their derivatives and events may not, bit for bit.)"""
    clip, apart, meta = coming_and_going
    analyzer = Analyzer(AnalysisParams())
    alone, together = analyzer(clip, meta), analyzer(apart, meta)
    stride = clip.num_frames + PAUSE_FRAMES
    persons = together.summary["persons"]
    assert len(persons) == APART * len(alone.summary["persons"])
    assert together.track.num_slots == alone.track.num_slots  # the lanes do not grow with the persons
    reference = {(p["first_frame"], p["last_frame"]): p for p in alone.summary["persons"]}
    where = ("id", "first_frame", "last_frame", "coverage")  # coverage: a share of the whole video
    for person in persons:
        shift = person["first_frame"] // stride * stride
        same = reference[(person["first_frame"] - shift, person["last_frame"] - shift)]
        assert person["frames_detected"] == same["frames_detected"]
        assert person["coverage"] == round(person["frames_detected"] / apart.num_frames, 4)
        names = ("landmarks_px", "angles", "angular_velocity", "com_px", "com_height_bh", "velocity_px_s", "contact")
        for name in names if shift == 0 else ("landmarks_px", "angles", "com_px"):
            mine = together.of_person(name, person["id"])[shift : shift + clip.num_frames]
            if shift == 0:
                np.testing.assert_array_equal(mine, alone.of_person(name, same["id"]), err_msg=name)
            else:
                np.testing.assert_allclose(mine, alone.of_person(name, same["id"]), rtol=1e-4, atol=1e-3, err_msg=name)
        if shift == 0:
            assert {k: v for k, v in person.items() if k not in where} == {
                k: v for k, v in same.items() if k not in where
            }
    first = [e for e in together.events if e["start_frame"] < stride]
    renumber = {
        p["id"]: reference[(p["first_frame"], p["last_frame"])]["id"] for p in persons if p["last_frame"] < stride
    }
    assert [e | {"person": renumber[e["person"]]} for e in first] == list(alone.events)


def test_the_analysis_peak_follows_the_lanes_not_the_persons(coming_and_going, tmp_path):
    _, apart, meta = coming_and_going
    summary, peak = _analyse_stored(apart, meta, tmp_path)
    lanes = AnalysisStore(tmp_path / "analysis").read(0, 1).track.num_slots
    assert len(summary["persons"]) >= APART * lanes  # many more persons than lanes
    budget = PEAK_BYTES_PER_FRAME_SLOT * apart.num_frames * lanes
    assert peak < budget, f"analysis peaked at {peak / 2**20:.1f} MiB, budget {budget / 2**20:.1f} MiB"


def test_the_report_draws_the_persons_tracked_longest(coming_and_going, tmp_path, sample_video):
    """With more analysed persons than ``MAX_PLOTTED_PERSONS``, the report's figures are those
    of the persons tracked longest (the first ids), and the page says so."""
    _, apart, meta = coming_and_going
    analysis = Analyzer(AnalysisParams())(apart, meta)
    analysed = [p["id"] for p in analysis.summary["persons"] if p["analysed"]]
    assert len(analysed) > MAX_PLOTTED_PERSONS
    plotted = plotted_persons(analysis.summary)
    assert plotted == analysed[:MAX_PLOTTED_PERSONS]
    frames = [p["frames_detected"] for p in analysis.summary["persons"] if p["analysed"]]
    assert min(frames[:MAX_PLOTTED_PERSONS]) >= max(frames[MAX_PLOTTED_PERSONS:])
    info = probe_video(str(sample_video))
    page = Path(write_report(str(tmp_path / "report.html"), str(sample_video), info, analysis, {}, frames=[]))
    html = page.read_text(encoding="utf-8")
    # A figure per person drawn, and the main person's highlighted angle raw against filtered.
    assert html.count('<figure class="plot">') == MAX_PLOTTED_PERSONS + 1
    assert html.count("angle, raw and filtered") == 2  # its caption, as alt text and below the figure
    assert f"Figures of the {MAX_PLOTTED_PERSONS} persons tracked longest, of {len(analysed)} analysed" in html
