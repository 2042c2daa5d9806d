"""Pose backends and the chunk loop they share: the MediaPipe backend reproduces
a plain MediaPipe loop bit for bit, and a second backend with another skeleton
runs through the same loop unchanged."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import ClassVar

import numpy as np
import pytest

from pipeline.config import QUALITY_PRESETS
from pipeline.errors import ModelError
from pipeline.pose import (
    BLAZEPOSE_33,
    LANDMARK_NAMES,
    FramePoses,
    FrameTracker,
    MediaPipeSettings,
    PoseBackend,
    PoseChunk,
    Skeleton,
    load_backend,
    track_chunk,
)
from pipeline.pose.skeleton import JOINT_ANGLES, LANDMARK, NUM_LANDMARKS
from pipeline.video.plan import ChunkSpec, is_sampled
from pipeline.video.probe import probe_video
from pipeline.video.reader import iter_frames


def plain_mediapipe(video, model_path: str, first: int, end: int, fps: float, sample_fps, num_poses: int) -> dict:
    """The reference: one landmarker over frames ``[first, end)`` read by OpenCV
    from frame 0, each sampled frame at ``round(index * 1000 / fps)`` ms."""
    import cv2
    import mediapipe as mp
    from mediapipe.tasks.python import BaseOptions
    from mediapipe.tasks.python.vision import PoseLandmarker, PoseLandmarkerOptions, RunningMode

    def score(value) -> float:
        return np.nan if value is None else value

    options = PoseLandmarkerOptions(
        base_options=BaseOptions(model_asset_path=model_path), running_mode=RunningMode.VIDEO, num_poses=num_poses
    )
    frames, landmarks = end - first, BLAZEPOSE_33.num_landmarks
    out = {
        "sampled": np.zeros(frames, bool),
        "image_xyzv": np.full((frames, num_poses, landmarks, 4), np.nan, np.float32),
        "world_xyz": np.full((frames, num_poses, landmarks, 3), np.nan, np.float32),
        "presence": np.full((frames, num_poses, landmarks), np.nan, np.float32),
    }
    cap = cv2.VideoCapture(str(video))
    with PoseLandmarker.create_from_options(options) as landmarker:
        for index in range(end):
            ok, frame = cap.read()
            assert ok, f"frame {index}"
            row = index - first
            if row < 0 or not is_sampled(index, fps, sample_fps):
                continue
            out["sampled"][row] = True
            image = mp.Image(image_format=mp.ImageFormat.SRGB, data=cv2.cvtColor(frame, cv2.COLOR_BGR2RGB))
            result = landmarker.detect_for_video(image, int(round(index * 1000.0 / fps)))
            for slot, (marks, world) in enumerate(zip(result.pose_landmarks, result.pose_world_landmarks)):
                out["image_xyzv"][row, slot] = [(p.x, p.y, p.z, score(p.visibility)) for p in marks]
                out["world_xyz"][row, slot] = [(p.x, p.y, p.z) for p in world]
                out["presence"][row, slot] = [score(p.presence) for p in marks]
    cap.release()
    return out


@pytest.fixture(scope="module")
def fps(sample_video) -> float:
    return probe_video(str(sample_video)).fps


@pytest.mark.parametrize(
    ("start", "warmup_start", "sample_fps", "num_poses"),
    [(0, 0, None, 1), (40, 20, 10.0, 2)],
    ids=["frames-0-60", "warm-up-and-sampling"],
)
def test_mediapipe_backend_is_the_plain_loop(sample_video, lite_model, fps, start, warmup_start, sample_fps, num_poses):
    """Frames ``[start, 60)`` (after a warm-up from ``warmup_start``): every array bit-identical."""
    end = 60
    spec = ChunkSpec(str(sample_video), 0, start, end, warmup_start, fps, sample_fps, is_last=False)
    settings = MediaPipeSettings(model_path=lite_model.path, model_sha256=lite_model.sha256, num_poses=num_poses)
    chunk = track_chunk(spec, settings)
    assert chunk.num_slots <= num_poses  # the slots it used
    chunk = chunk.with_slots(num_poses)
    expected = plain_mediapipe(sample_video, lite_model.path, warmup_start, end, fps, sample_fps, num_poses)
    kept = slice(start - warmup_start, None)
    np.testing.assert_array_equal(chunk.frame_index, np.arange(start, end))
    np.testing.assert_array_equal(chunk.timestamp_ms, np.arange(start, end) * (1000.0 / fps))
    for name, values in expected.items():
        np.testing.assert_array_equal(getattr(chunk, name), values[kept], err_msg=name)
    assert chunk.detected[chunk.sampled].any()  # a person found: the comparison is not of NaN with NaN only


def test_backend_loaded_once_per_settings(lite_model):
    settings = MediaPipeSettings(model_path=lite_model.path, model_sha256=lite_model.sha256)
    backend = load_backend(settings)
    assert load_backend(MediaPipeSettings(model_path=lite_model.path, model_sha256=lite_model.sha256)) is backend
    assert backend.skeleton is BLAZEPOSE_33 and backend.num_poses == 1
    with pytest.raises(ModelError, match="sha256"):
        load_backend(MediaPipeSettings(model_path=lite_model.path, model_sha256="0" * 64))


def test_settings_from_a_quality_preset(lite_model):
    preset = replace(
        QUALITY_PRESETS["accurate"],
        min_detection_confidence=0.6,
        min_presence_confidence=0.7,
        min_tracking_confidence=0.8,
    )
    from_attributes = MediaPipeSettings.from_preset(preset, lite_model, num_poses=2)
    assert from_attributes.min_tracking_confidence == 0.8 and from_attributes.num_poses == 2
    assert from_attributes.model_sha256 == lite_model.sha256
    assert from_attributes.backend_name == "mediapipe" and from_attributes.skeleton is BLAZEPOSE_33
    with pytest.raises(ValueError, match="min_detection_confidence"):
        MediaPipeSettings.from_preset(replace(preset, min_detection_confidence=1.5), lite_model)


# A second backend: five points, each a fixed function of the frame's mean colour.
TOY_SKELETON = Skeleton(
    name="toy_5",
    landmark_names=("head", "left_hand", "right_hand", "left_foot", "right_foot"),
    connections=((0, 1), (0, 2), (0, 3), (0, 4)),
    angles=(("left_side", (1, 0, 3)),),
)


def toy_poses(frame: np.ndarray) -> FramePoses:
    level = frame.reshape(-1, 3).mean(axis=0) / 255.0  # mean R, G, B
    points = np.arange(TOY_SKELETON.num_landmarks)[:, None] / 10.0
    image = np.concatenate([points + level[:2], np.full((TOY_SKELETON.num_landmarks, 2), level[2])], axis=1)
    return FramePoses(
        image_xyzv=image[None].astype(np.float32),
        world_xyz=image[None, :, :3].astype(np.float32),
        presence=np.full((1, TOY_SKELETON.num_landmarks), level.mean(), np.float32),
    )


class ToyTracker(FrameTracker):
    def __init__(self) -> None:
        self.timestamps: list[int] = []
        self.frame_types: set[tuple] = set()
        self.closed = False

    def __call__(self, frame: np.ndarray, timestamp_ms: int) -> FramePoses:
        self.timestamps.append(timestamp_ms)
        self.frame_types.add((frame.dtype, frame.ndim, frame.shape[-1]))
        return toy_poses(frame)

    def close(self) -> None:
        self.closed = True


class ToyBackend(PoseBackend):
    def __init__(self, settings: ToySettings) -> None:
        super().__init__(settings)
        self.trackers: list[ToyTracker] = []

    def start(self) -> ToyTracker:
        self.trackers.append(ToyTracker())
        return self.trackers[-1]


@dataclass(frozen=True)
class ToySettings:
    backend_name: ClassVar[str] = "toy"
    num_poses: int = 1

    @property
    def backend(self) -> type[ToyBackend]:
        return ToyBackend

    @property
    def skeleton(self) -> Skeleton:
        return TOY_SKELETON


def test_a_second_backend_runs_through_the_same_loop(sample_video, fps):
    spec = ChunkSpec(str(sample_video), 3, 20, 40, 10, fps, 15.0, is_last=False)
    chunk = track_chunk(spec, ToySettings())
    backend = load_backend(ToySettings())
    assert isinstance(backend, ToyBackend)
    tracker = backend.trackers[-1]
    assert tracker.closed and tracker.frame_types == {(np.dtype(np.uint8), 3, 3)}

    assert chunk.num_landmarks == 5 and chunk.image_xyzv.shape == (20, 1, 5, 4)
    np.testing.assert_array_equal(chunk.frame_index, np.arange(20, 40))
    sampled = [is_sampled(i, fps, 15.0) for i in range(10, 40)]
    np.testing.assert_array_equal(chunk.sampled, sampled[10:])
    # the warm-up frames were tracked too, at the frames' own times
    assert tracker.timestamps == [round(i * 1000.0 / fps) for i in range(10, 40) if sampled[i - 10]]
    expected = np.full((20, 1, 5, 4), np.nan, np.float32)
    for index, frame in iter_frames(str(sample_video), 20, 40, lambda i: is_sampled(i, fps, 15.0), None, "rgb24"):
        if frame is not None:
            expected[index - 20] = toy_poses(frame).image_xyzv
    np.testing.assert_array_equal(chunk.image_xyzv, expected)
    assert np.isnan(chunk.world_xyz[~chunk.sampled]).all() and not np.isnan(chunk.world_xyz[chunk.sampled]).any()

    track_chunk(spec, ToySettings())  # the same backend, a fresh tracker per chunk
    assert load_backend(ToySettings()) is backend and len(backend.trackers) == 2
    assert backend.trackers[-1].timestamps == tracker.timestamps


def test_last_chunk_ends_at_the_frame_table(sample_video, fps):
    """The last chunk holds exactly the frames the container's index lists."""
    frame_count = probe_video(str(sample_video)).frame_count
    spec = ChunkSpec(str(sample_video), 9, 190, frame_count, 180, fps, None, is_last=True)
    chunk = track_chunk(spec, ToySettings(num_poses=2))
    np.testing.assert_array_equal(chunk.frame_index, np.arange(190, frame_count))
    assert chunk.num_slots == 1  # of two: a chunk keeps the slots it used
    assert chunk.detected[:, 0].all() and chunk.decoded.all()


@pytest.mark.parametrize(("start", "end", "warmup_start"), [(0, 60, 0), (20, 40, 10), (23, 60, 18)])
def test_undecodable_frames_keep_their_rows(tmp_path, sample_video, fps, start, end, warmup_start):
    """A frame whose data cannot be decoded is a row marked not decoded and not sampled; the rest are tracked."""
    import media

    damaged = str(media.damaged_packets(tmp_path, sample_video))
    spec = ChunkSpec(damaged, 0, start, end, warmup_start, fps, None, is_last=end == media.DAMAGED_FRAMES)
    chunk = track_chunk(spec, ToySettings())
    np.testing.assert_array_equal(chunk.frame_index, np.arange(start, end))
    lost = [f for f in media.UNDECODABLE_FRAMES if start <= f < end]
    assert list(chunk.frame_index[~chunk.decoded]) == lost
    assert list(chunk.frame_index[~chunk.sampled]) == lost
    assert not chunk.detected[~chunk.decoded].any() and chunk.detected[chunk.decoded, 0].all()


def test_skeleton():
    assert BLAZEPOSE_33.num_landmarks == NUM_LANDMARKS == len(LANDMARK_NAMES)
    assert BLAZEPOSE_33.index("left_hip") == LANDMARK["left_hip"] == LANDMARK_NAMES.index("left_hip")
    assert BLAZEPOSE_33.joint_angles == JOINT_ANGLES and BLAZEPOSE_33.angle_names == tuple(JOINT_ANGLES)
    assert TOY_SKELETON.index("right_foot") == 4 and hash(TOY_SKELETON) == hash(TOY_SKELETON)
    with pytest.raises(KeyError, match="toy_5 has no landmark 'tail'"):
        TOY_SKELETON.index("tail")
    with pytest.raises(ValueError, match="connection"):
        Skeleton("bad", ("a", "b"), connections=((0, 2),))
    with pytest.raises(ValueError, match="unique landmark names"):
        Skeleton("bad", ("a", "a"))


def test_pose_chunk_landmark_count():
    assert PoseChunk.empty(0, 3, 2, 30.0).num_landmarks == NUM_LANDMARKS
    chunk = PoseChunk.empty(5, 3, 2, 30.0, landmarks=5)
    assert chunk.image_xyzv.shape == (3, 2, 5, 4) and chunk.presence.shape == (3, 2, 5)
    with pytest.raises(ValueError, match=r"world_xyz: expected shape \(3, 2, 5, 3\)"):
        replace(chunk, world_xyz=np.zeros((3, 2, 6, 3), np.float32))
    with pytest.raises(ValueError, match="image_xyzv"):
        FramePoses(np.zeros((1, 5, 3), np.float32), np.zeros((1, 5, 3), np.float32), np.zeros((1, 5), np.float32))
