"""MediaPipe's PoseLandmarker (Tasks API, VIDEO mode) as a pose backend, with
BlazePose's 33 landmarks.

``MediaPipeBackend`` reads and checks the model file once per process. Each
chunk then runs on a landmarker built from those bytes in memory (about 80 ms,
1-3 % of a chunk). A landmarker carried from one chunk to the next would keep
state that no input clears: its visibility filter survives frames without a
person and decays by only 10 % a frame, so the result of a chunk would depend
on which chunk the worker happened to run before it. With a landmarker per
chunk the result of a chunk depends on the chunk alone, and the chunk's warm-up
frames (decoded and tracked, not kept) bring the tracking close to the state a
sequential run has at the chunk's first kept frame.

MediaPipe's own info and warning lines are held back while a landmarker lives
(``pipeline.pose.native_log``) unless ``POSE_PIPELINE_NATIVE_LOG=1``.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from pipeline import storage
from pipeline.errors import ModelError, redact
from pipeline.pose.backends import FramePoses, FrameTracker, PoseBackend
from pipeline.pose.models import ModelFile
from pipeline.pose.native_log import NativeLogFilter
from pipeline.pose.skeleton import BLAZEPOSE_33, Skeleton

_CONFIDENCES = ("min_detection_confidence", "min_presence_confidence", "min_tracking_confidence")


@dataclass(frozen=True)
class MediaPipeSettings:
    """Everything that defines a landmarker. Plain values: it is sent to workers."""

    backend_name: ClassVar[str] = "mediapipe"

    model_path: str
    model_sha256: str
    num_poses: int = 1
    min_detection_confidence: float = 0.5
    min_presence_confidence: float = 0.5
    min_tracking_confidence: float = 0.5

    def __post_init__(self) -> None:
        if self.num_poses < 1:
            raise ValueError(f"num_poses: expected >= 1, got {self.num_poses}")
        for name in _CONFIDENCES:
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"{name}: expected a value in [0, 1], got {value}")

    @property
    def backend(self) -> type[MediaPipeBackend]:
        return MediaPipeBackend

    @property
    def skeleton(self) -> Skeleton:
        return BLAZEPOSE_33

    @classmethod
    def from_preset(cls, preset: Any, model: ModelFile, num_poses: int = 1) -> MediaPipeSettings:
        """The landmarker a ``--quality`` preset asks for, with ``model``; the
        preset's confidences are read by attribute (a ``QualityPreset``)."""
        return cls(
            model_path=model.path,
            model_sha256=model.sha256,
            num_poses=num_poses,
            **{name: getattr(preset, name) for name in _CONFIDENCES},
        )


class MediaPipeBackend(PoseBackend):
    """The model file, read and checked once; ``start()`` builds a landmarker from it."""

    settings: MediaPipeSettings

    def __init__(self, settings: MediaPipeSettings) -> None:
        import mediapipe as mp
        from mediapipe.tasks.python import BaseOptions
        from mediapipe.tasks.python.vision import PoseLandmarker, PoseLandmarkerOptions, RunningMode

        super().__init__(settings)
        try:
            with storage.open_file(settings.model_path) as fh:  # a local file, or the run's copy on object storage
                model = fh.read()
        except OSError as exc:
            where = redact(settings.model_path)
            raise ModelError(f"pose model {where} cannot be read on this machine: {exc.strerror or exc}") from exc
        if settings.model_sha256 and hashlib.sha256(model).hexdigest() != settings.model_sha256:
            raise ModelError(f"pose model {settings.model_path} differs from the file the run resolved (sha256)")
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
        self.start().close()  # fail here, not in the first chunk

    def start(self) -> MediaPipeTracker:
        """A new landmarker: VIDEO mode, its tracking state empty."""
        native_log = NativeLogFilter().open()
        try:
            landmarker = self._factory.create_from_options(self._options)
        except (RuntimeError, ValueError) as exc:
            native_log.close()
            raise ModelError(f"pose model {self.settings.model_path} could not be loaded: {exc}") from exc
        return MediaPipeTracker(landmarker, self._mp, self.settings.num_poses, native_log)


class MediaPipeTracker(FrameTracker):
    """One landmarker, for one chunk."""

    def __init__(self, landmarker, mp, num_poses: int, native_log: NativeLogFilter) -> None:
        self._landmarker = landmarker
        self._mp = mp
        self._num_poses = num_poses
        self._native_log = native_log  # held until the landmarker's threads have stopped

    def __call__(self, frame: np.ndarray, timestamp_ms: int) -> FramePoses:
        mp = self._mp
        result = self._landmarker.detect_for_video(mp.Image(image_format=mp.ImageFormat.SRGB, data=frame), timestamp_ms)
        poses = list(zip(result.pose_landmarks[: self._num_poses], result.pose_world_landmarks[: self._num_poses]))
        image_xyzv = [[(p.x, p.y, p.z, _score(p.visibility)) for p in marks] for marks, _ in poses]
        world_xyz = [[(p.x, p.y, p.z) for p in world] for _, world in poses]
        presence = [[_score(p.presence) for p in marks] for marks, _ in poses]
        shape = (len(poses), BLAZEPOSE_33.num_landmarks)
        return FramePoses(
            image_xyzv=np.array(image_xyzv, np.float32).reshape(*shape, 4),
            world_xyz=np.array(world_xyz, np.float32).reshape(*shape, 3),
            presence=np.array(presence, np.float32).reshape(shape),
        )

    def close(self) -> None:
        try:
            self._landmarker.close()
        finally:
            self._native_log.close()


def _score(value) -> float:
    return float("nan") if value is None else float(value)
