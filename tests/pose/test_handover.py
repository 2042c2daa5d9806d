"""Chunk handover: a chunk tracks past its end while a shadow of the next chunk's
tracker catches up, and the stitched track takes every frame from the earliest
chunk that holds it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import pytest
from test_backend import TOY_SKELETON, ToyBackend, ToyTracker, plain_mediapipe, toy_poses

from pipeline.errors import ConfigError
from pipeline.pose import FramePoses, MediaPipeSettings, PoseChunk, Skeleton, load_backend, run_chunk, track_chunk
from pipeline.pose.backends.mediapipe import MediaPipeBackend
from pipeline.pose.handover import HANDOVER_FRAMES, same_people, stitch
from pipeline.pose.types import Handover
from pipeline.video.plan import MAX_HANDOVER_S, ChunkSpec, plan_chunks
from pipeline.video.probe import probe_video


@pytest.fixture(scope="module")
def info(sample_video):
    return probe_video(str(sample_video))


# -- a toy backend whose tracker finds the person only from its ``acquire_after``-th frame on --------
class LateTracker(ToyTracker):
    def __init__(self, acquire_after: int) -> None:
        super().__init__()
        self.acquire_after = acquire_after

    def __call__(self, frame: np.ndarray, timestamp_ms: int) -> FramePoses:
        poses = super().__call__(frame, timestamp_ms)
        if len(self.timestamps) <= self.acquire_after:
            return FramePoses(poses.image_xyzv[:0], poses.world_xyz[:0], poses.presence[:0])
        return poses


class LateBackend(ToyBackend):
    def start(self) -> LateTracker:
        self.trackers.append(LateTracker(self.settings.acquire_after))
        return self.trackers[-1]


@dataclass(frozen=True)
class LateSettings:
    backend_name: ClassVar[str] = "late-toy"
    num_poses: int = 1
    acquire_after: int = 7

    @property
    def backend(self) -> type[LateBackend]:
        return LateBackend

    @property
    def skeleton(self) -> Skeleton:
        return TOY_SKELETON


def test_the_tail_lasts_until_the_next_chunks_tracker_has_caught_up(sample_video, info):
    """The next chunk's tracker finds the person on its 8th frame: the tail is those 7 frames
    plus HANDOVER_FRAMES agreeing ones, and the tail's rows are the chunk's own tracker's."""
    spec = ChunkSpec(str(sample_video), 0, 0, 40, 0, info.fps, None, is_last=False, tail_limit=60, handover_start=40)
    chunk = track_chunk(spec, LateSettings())
    assert chunk.handover == Handover(tail=7 + HANDOVER_FRAMES, settled=True)
    assert chunk.num_frames == 40 + 7 + HANDOVER_FRAMES
    np.testing.assert_array_equal(chunk.frame_index, np.arange(0, 40 + 7 + HANDOVER_FRAMES))
    assert not chunk.detected[:7].any() and chunk.detected[7:].all()  # its own tracker: late at its own start only
    own, shadow = load_backend(LateSettings()).trackers[-2:]
    assert own.closed and shadow.closed
    assert len(shadow.timestamps) == 7 + HANDOVER_FRAMES  # started at the next chunk's first frame
    assert shadow.timestamps == own.timestamps[40:]  # with the next chunk's timestamps


def test_a_tail_that_reaches_its_limit_is_unsettled(sample_video, info):
    spec = ChunkSpec(str(sample_video), 0, 0, 40, 0, info.fps, None, is_last=False, tail_limit=9, handover_start=40)
    chunk = track_chunk(spec, LateSettings())
    assert chunk.handover == Handover(tail=9, settled=False)
    assert chunk.num_frames == 49


def test_a_tail_that_reaches_the_video_end_is_settled(sample_video, info):
    end = info.frame_count - 6
    spec = ChunkSpec(
        str(sample_video), 0, end - 20, end, end - 20, info.fps, None, False, tail_limit=6, handover_start=end
    )
    chunk = track_chunk(spec, LateSettings())
    assert chunk.handover == Handover(tail=6, settled=True)  # nothing after it to miss anyone
    np.testing.assert_array_equal(chunk.frame_index, np.arange(end - 20, info.frame_count))


def test_a_variable_rate_shadow_gets_the_next_chunks_container_times(tmp_path, sample_video):
    """On a variable-frame-rate clip (1/30 s apart up to frame 30, 1/15 s after) the shadow feeds
    exactly the timestamps the next chunk's own tracker feeds, warm-up included: the container's
    times of the frames, not ``index * 1000 / fps``."""
    import media

    vfr = probe_video(media.variable_frame_rate(tmp_path, sample_video))
    assert vfr.variable_frame_rate
    first, second = plan_chunks(vfr, 25, 4)[:2]
    assert (first.end, first.handover_start, second.warmup_start) == (25, 21, 21) and first.variable_rate
    trackers = load_backend(LateSettings()).trackers
    chunk = track_chunk(first, LateSettings())
    own, shadow = trackers[-2:]
    track_chunk(second, LateSettings())
    following = trackers[-2]  # the second chunk's own tracker (the last one is its shadow of the third)
    container_ms = [round(t * 1000) for t in media.vfr_timestamps_s()]
    assert own.timestamps == container_ms[: chunk.num_frames]
    assert chunk.handover.settled and first.end + chunk.handover.tail > media.VFR_SPLIT  # past the change of rate
    fed = len(shadow.timestamps)
    assert shadow.timestamps == following.timestamps[:fed] == container_ms[21 : 21 + fed]
    np.testing.assert_allclose(chunk.timestamp_ms, np.array(media.vfr_timestamps_s())[: chunk.num_frames] * 1000)


def test_a_mediapipe_tail_is_the_plain_loop_and_ends_where_the_next_chunk_agrees(sample_video, lite_model, info):
    """Two people, the chunk boundary at frame 115. The chunk's rows, tail included, are
    bit-identical to one plain landmarker from frame 0; the next chunk, run on its own, agrees
    with them on the tail's last HANDOVER_FRAMES frames and not on the frame before."""
    settings = MediaPipeSettings(model_path=lite_model.path, model_sha256=lite_model.sha256, num_poses=2)
    first, second = plan_chunks(info, 115, 0)
    assert first.tail_limit == min(round(MAX_HANDOVER_S * info.fps), info.frame_count - 115)
    assert first.handover_start == 115 and second.tail_limit == 0 and second.handover_start is None
    chunk = track_chunk(first, settings)
    tail = chunk.handover.tail
    assert chunk.handover.settled and HANDOVER_FRAMES < tail < first.tail_limit
    reference = plain_mediapipe(sample_video, lite_model.path, 0, 115 + tail, info.fps, None, 2)
    padded = chunk.with_slots(2)
    for name in ("image_xyzv", "world_xyz", "presence"):
        np.testing.assert_array_equal(getattr(padded, name), reference[name], err_msg=name)

    following = run_chunk(MediaPipeBackend(settings), second)
    agree = [
        same_people(_frame(chunk, 115 + i), _frame(following, 115 + i), info.width, info.height) for i in range(tail)
    ]
    assert all(agree[-HANDOVER_FRAMES:]) and not agree[-HANDOVER_FRAMES - 1]
    assert not all(agree[:HANDOVER_FRAMES])  # the next chunk did miss someone at its start

    track, report = stitch([chunk, following])
    assert report == {"chunks": 2, "boundaries": 1, "overlap_frames": tail, "unsettled": 0}
    np.testing.assert_array_equal(track.frame_index, np.arange(info.frame_count))
    np.testing.assert_array_equal(track.slice(0, 115 + tail).image_xyzv, padded.image_xyzv)
    np.testing.assert_array_equal(
        track.slice(115 + tail).image_xyzv, following.slice(tail).with_slots(track.num_slots).image_xyzv
    )


def _frame(chunk: PoseChunk, index: int) -> FramePoses:
    row = index - int(chunk.frame_index[0])
    present = chunk.detected[row]
    return FramePoses(chunk.image_xyzv[row, present], chunk.world_xyz[row, present], chunk.presence[row, present])


# -- stitching, on made-up chunks ---------------------------------------------------------------
def _chunk(start: int, frames: int, slots: int, value: float, tail: int | None = None) -> PoseChunk:
    chunk = PoseChunk.empty(start, frames, slots, 30.0, landmarks=2)
    chunk.image_xyzv[:, 0] = value
    handover = None if tail is None else Handover(tail, settled=value != 3.0)
    return PoseChunk(**{n: getattr(chunk, n) for n in ("frame_index", "timestamp_ms", "sampled")},
                     image_xyzv=chunk.image_xyzv, world_xyz=chunk.world_xyz, presence=chunk.presence,
                     handover=handover)  # fmt: skip


def test_stitch_takes_each_frame_from_the_earliest_chunk_that_holds_it():
    # chunk 0 holds 0-9 and a tail of 15 (over all of chunk 1 and into chunk 2), chunk 1 holds 10-14 and a
    # tail of 3 (its rows all covered), chunk 2 holds 15-29 and a tail of 2 that reaches chunk 3, the last.
    chunks = [_chunk(0, 25, 1, 1.0, 15), _chunk(10, 8, 2, 2.0, 3), _chunk(15, 17, 1, 3.0, 2), _chunk(30, 5, 3, 4.0)]
    track, report = stitch(chunks)
    np.testing.assert_array_equal(track.frame_index, np.arange(35))
    assert track.num_slots == 3  # the most any chunk used; the others padded with empty slots
    source = track.image_xyzv[:, 0, 0, 0]
    np.testing.assert_array_equal(source, [1.0] * 25 + [3.0] * 7 + [4.0] * 3)
    assert np.isnan(track.image_xyzv[:25, 1:]).all()
    assert report == {"chunks": 4, "boundaries": 3, "overlap_frames": 20, "unsettled": 1}


def test_a_video_of_one_chunk_is_stitched_as_it_is():
    chunk = _chunk(0, 12, 2, 1.0)
    track, report = stitch([chunk])
    np.testing.assert_array_equal(track.image_xyzv, chunk.image_xyzv)
    assert report == {"chunks": 1, "boundaries": 0, "overlap_frames": 0, "unsettled": 0}


def test_same_people_pairs_persons_one_to_one():
    frame = np.full((994, 1768, 3), 90, np.uint8)
    one = toy_poses(frame)
    two = FramePoses(*(np.concatenate([a, a + 0.3]) for a in (one.image_xyzv, one.world_xyz, one.presence)))
    swapped = FramePoses(*(a[::-1].copy() for a in (two.image_xyzv, two.world_xyz, two.presence)))
    assert same_people(two, swapped, 1768, 994)  # order does not matter
    assert not same_people(one, two, 1768, 994)  # a person more
    moved = FramePoses(two.image_xyzv + np.float32(0.02), two.world_xyz, two.presence)  # 2 % of each side
    assert not same_people(two, moved, 1768, 994)
    nearly = FramePoses(two.image_xyzv + np.float32(0.005), two.world_xyz, two.presence)
    assert same_people(two, nearly, 1768, 994)
    empty = FramePoses(one.image_xyzv[:0], one.world_xyz[:0], one.presence[:0])
    assert same_people(empty, empty, 1768, 994)


def test_plan_gives_every_chunk_but_the_last_a_tail(info):
    specs = plan_chunks(info, 40, 0, handover_s=2.0)
    assert [s.tail_limit for s in specs] == [60, 60, 60, 60, 30, 0]  # at most to the video's end
    assert [s.handover_start for s in specs[:-1]] == [s.start for s in specs[1:]]
    assert specs[-1].handover_start is None
    warm = plan_chunks(info, 40, 8)
    assert [s.handover_start for s in warm[:-1]] == [s.warmup_start for s in warm[1:]]  # where the next one starts
    assert all(s.tail_limit == 0 for s in plan_chunks(info, 40, 0, handover_s=0))
    with pytest.raises(ConfigError, match="handover_s"):
        plan_chunks(info, 40, 0, handover_s=-1)
    with pytest.raises(ValueError, match="handover_start"):
        ChunkSpec("v.mp4", 0, 0, 40, 0, 30.0, None, False, tail_limit=5)
