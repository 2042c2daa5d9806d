"""The analysis of a long video holds the track once, not a copy per step.

The real track of the sample clip (both people, image and world landmarks, lite
model) is repeated to 5 minutes at 30 fps, as ``bench/`` builds its long clip,
saved in chunks as the workers save them, and analysed as the Ray actor does it
(``AnalyzerActor.analyze_stored``, here in-process). ``tracemalloc`` sees every
numpy buffer, so the peak is exact and the same on every machine.
"""

from __future__ import annotations

import tracemalloc

import numpy as np
import pytest

from pipeline.analysis.analyzer import AnalysisParams, Analyzer, TrackMeta
from pipeline.analysis.store import AnalysisStore
from pipeline.engines.ray_engine import AnalyzerActor
from pipeline.pose import MediaPipeSettings, track_chunk
from pipeline.pose.types import PoseChunk
from pipeline.video.plan import ChunkSpec
from pipeline.video.probe import probe_video
from pipeline.workdir import load_track, save_chunk

REPEATS = 40  # 230 frames x 40 = 9,200 frames: 5 minutes at 30 fps
CHUNK_FRAMES = 1800
# Per frame and linked person slot (the repeats' seams give 4 slots here): the linked
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


def test_linking_then_analysing_is_the_whole_analysis(long_track):
    track, meta = long_track
    analyzer = Analyzer(AnalysisParams())
    whole = analyzer(track, meta)
    linked, tracking = analyzer.link_counted(track, meta)
    split = analyzer.analyze_linked(linked, meta, tracking)
    assert whole.summary == split.summary and whole.events == split.events
    np.testing.assert_array_equal(whole.landmarks_px, split.landmarks_px)
    np.testing.assert_array_equal(whole.angles, split.angles)
    analysed = [p["analysed"] for p in whole.summary["persons"]]
    assert analysed[0] and analysed == sorted(analysed, reverse=True)  # too short ones are reported last


def test_stored_analysis_of_a_long_track_peaks_below_its_budget(long_track, tmp_path):
    track, meta = long_track
    records = [
        save_chunk(tmp_path / f"chunk-{i:03d}.npz", i, track.slice(start, start + CHUNK_FRAMES))
        for i, start in enumerate(range(0, track.num_frames, CHUNK_FRAMES))
    ]
    assert load_track(records).num_frames == track.num_frames
    actor = AnalyzerActor(AnalysisParams())
    tracemalloc.start()
    try:
        summary = actor.analyze_stored(records, meta, str(tmp_path / "analysis"))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    stored = AnalysisStore(tmp_path / "analysis")
    assert stored.num_frames == track.num_frames and stored.summary == summary
    slots = stored.read(0, 1).track.num_slots
    budget = PEAK_BYTES_PER_FRAME_SLOT * track.num_frames * slots
    assert peak < budget, f"analysis peaked at {peak / 2**20:.1f} MiB, budget {budget / 2**20:.1f} MiB"
