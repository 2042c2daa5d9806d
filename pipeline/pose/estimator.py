"""PoseEstimator: MediaPipe's PoseLandmarker (Tasks API, VIDEO mode) turning a
chunk of frames into a PoseChunk of numpy arrays.

A Dask worker keeps one PoseEstimator for its whole life: the model file is
read and checked once. Each chunk then runs on a landmarker built from those
bytes in memory (about 80 ms, 1-3 % of a chunk). A landmarker carried from one
chunk to the next would keep state that no input clears: its visibility filter
survives frames without a person and decays by only 10 % a frame, so the
result of a chunk would depend on which chunk the worker happened to run
before it. With a landmarker per chunk the result of a chunk depends on the
chunk alone, and the chunk's warm-up frames (decoded and tracked, not kept)
bring the tracking close to the state a sequential run has at the chunk's first
kept frame.

Timestamps fed to the landmarker are the frames' own (``round(index * 1000 /
fps)`` ms), exactly what a sequential loop from frame 0 feeds, so temporal
smoothing sees the same time steps. A variable-frame-rate video is read in one
chunk, and its frames carry the container's presentation times instead.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass

from pipeline.errors import ModelError
from pipeline.pose.models import ModelFile
from pipeline.pose.types import PoseChunk
from pipeline.video.plan import ChunkSpec, is_sampled
from pipeline.video.reader import iter_frames

os.environ.setdefault("GLOG_minloglevel", "2")  # MediaPipe's C++ log: errors only
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


@dataclass(frozen=True)
class EstimatorSettings:
    """Everything that defines a landmarker. Plain values: it is sent to workers."""

    model_path: str
    model_sha256: str
    num_poses: int = 1
    min_detection_confidence: float = 0.5
    min_presence_confidence: float = 0.5
    min_tracking_confidence: float = 0.5

    def __post_init__(self) -> None:
        if self.num_poses < 1:
            raise ValueError(f"num_poses: expected >= 1, got {self.num_poses}")
        for name in ("min_detection_confidence", "min_presence_confidence", "min_tracking_confidence"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"{name}: expected a value in [0, 1], got {value}")

    @classmethod
    def from_preset(cls, preset: dict, model: ModelFile, num_poses: int = 1) -> EstimatorSettings:
        """The landmarker a ``--quality`` preset (``QUALITY_PRESETS[name]``) asks for, with ``model``."""
        return cls(
            model_path=model.path,
            model_sha256=model.sha256,
            num_poses=num_poses,
            min_detection_confidence=preset["min_detection_confidence"],
            min_presence_confidence=preset["min_presence_confidence"],
            min_tracking_confidence=preset["min_tracking_confidence"],
        )


class PoseEstimator:
    """Stateful callable: ``__init__`` loads the model, ``__call__(chunk)`` runs it."""

    def __init__(self, settings: EstimatorSettings) -> None:
        import mediapipe as mp
        from mediapipe.tasks.python import BaseOptions
        from mediapipe.tasks.python.vision import PoseLandmarker, PoseLandmarkerOptions, RunningMode

        try:
            with open(settings.model_path, "rb") as fh:
                model = fh.read()
        except OSError as exc:
            raise ModelError(f"pose model {settings.model_path} cannot be read on this machine: {exc}") from exc
        if settings.model_sha256 and hashlib.sha256(model).hexdigest() != settings.model_sha256:
            raise ModelError(f"pose model {settings.model_path} differs from the file the run resolved (sha256)")
        self.settings = settings
        self._mp = mp
        self._factory = PoseLandmarker
        self._options = PoseLandmarkerOptions(
            base_options=BaseOptions(model_asset_buffer=model),
            running_mode=RunningMode.VIDEO,
            num_poses=settings.num_poses,
            min_pose_detection_confidence=settings.min_detection_confidence,
            min_pose_presence_confidence=settings.min_presence_confidence,
            min_tracking_confidence=settings.min_tracking_confidence,
        )
        self._landmarker().close()  # fail here, not in the first chunk

    def _landmarker(self):
        try:
            return self._factory.create_from_options(self._options)
        except (RuntimeError, ValueError) as exc:
            raise ModelError(f"pose model {self.settings.model_path} could not be loaded: {exc}") from exc

    def __call__(self, spec: ChunkSpec) -> PoseChunk:
        """Decode and track frames ``[warmup_start, end)``; return ``[start, end)``.

        A last chunk reads to the end of the stream; any chunk may come back
        shorter than planned when the stream ends early (the caller checks).
        """
        with self._landmarker() as landmarker:
            return self._run(landmarker, spec)

    def _run(self, landmarker, spec: ChunkSpec) -> PoseChunk:
        mp = self._mp
        num_poses = self.settings.num_poses
        first = spec.warmup_start
        out = PoseChunk.empty(first, spec.end - first, num_poses, spec.fps)
        decoded = 0

        def want(index: int) -> bool:
            return is_sampled(index, spec.fps, spec.sample_fps)

        end = None if spec.is_last else spec.end
        times = [] if spec.variable_rate else None
        fed_ms = -1
        for index, frame in iter_frames(spec.video_path, first, end, want, times, pixel_format="rgb24"):
            row = index - first
            if row >= out.num_frames:  # last chunk: more frames than the container said
                more = PoseChunk.empty(index, max(out.num_frames, 16), num_poses, spec.fps)
                out = PoseChunk.concatenate([out, more])
            decoded = row + 1
            if times is not None:  # variable frame rate: the container's time of this frame
                out.timestamp_ms[row] = times[-1]
            if frame is None:
                out.sampled[row] = False
                continue
            image = mp.Image(image_format=mp.ImageFormat.SRGB, data=frame)
            frame_ms = int(round(out.timestamp_ms[row] if times is not None else index * 1000.0 / spec.fps))
            fed_ms = max(fed_ms + 1, frame_ms)  # the landmarker needs strictly increasing times
            result = landmarker.detect_for_video(image, fed_ms)
            poses = zip(result.pose_landmarks[:num_poses], result.pose_world_landmarks[:num_poses])
            for slot, (landmarks, world) in enumerate(poses):
                out.image_xyzv[row, slot] = [(p.x, p.y, p.z, _score(p.visibility)) for p in landmarks]
                out.presence[row, slot] = [_score(p.presence) for p in landmarks]
                out.world_xyz[row, slot] = [(p.x, p.y, p.z) for p in world]
        return out.slice(spec.start - first, decoded)


def _score(value) -> float:
    return float("nan") if value is None else float(value)
