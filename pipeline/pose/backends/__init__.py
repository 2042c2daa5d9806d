"""Pose backends: models that turn decoded frames into landmarks.

A backend is a stateful callable class (Ray's batch-inference pattern):

- ``Backend(settings)`` loads the model, once per process
  (``pipeline.pose.chunks.load_backend`` keeps it for the process's life);
- ``backend.start()`` gives a fresh ``FrameTracker`` for one chunk, so whatever
  state the model carries from frame to frame starts empty in every chunk and
  the result of a chunk depends on the chunk alone;
- ``tracker(frame, timestamp_ms)`` takes one decoded RGB frame and returns the
  people found in it (``FramePoses``), in the landmarks of ``backend.skeleton``.

The chunk loop shared by every backend (``pipeline.pose.chunks``) decodes the
frames, skips those that sampling drops, gives each kept frame its timestamp and
assembles the ``PoseChunk``: with it, a backend is a callable from decoded
frames and their timestamps to a PoseChunk, plus a skeleton.

A backend's settings are a frozen dataclass of plain values (hashable: they key
the process's backend cache; picklable: they are sent to workers) with a
``num_poses`` field and three class-level names: ``backend_name``, ``backend``
(its ``PoseBackend`` class) and ``skeleton``. A new backend is one module in
this package holding its settings, its ``PoseBackend`` and its ``FrameTracker``.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import ClassVar, Protocol

import numpy as np

from pipeline.pose.skeleton import Skeleton


class BackendSettings(Protocol):
    """What the chunk loop and the backend cache need of a backend's settings."""

    backend_name: ClassVar[str]

    @property
    def num_poses(self) -> int: ...

    @property
    def backend(self) -> type[PoseBackend]: ...

    @property
    def skeleton(self) -> Skeleton: ...


@dataclass(frozen=True)
class FramePoses:
    """The people a tracker found in one frame: K persons (at most ``num_poses``)
    of L landmarks (the backend's skeleton), in the model's order.

    - ``image_xyzv`` float32 [K, L, 4]: x, y normalised to the frame width/height, z, visibility
    - ``world_xyz`` float32 [K, L, 3]: metres
    - ``presence`` float32 [K, L]: probability that the landmark is in frame

    NaN where the model gives no value.
    """

    image_xyzv: np.ndarray
    world_xyz: np.ndarray
    presence: np.ndarray

    def __post_init__(self) -> None:
        persons, landmarks = self.image_xyzv.shape[:2] if getattr(self.image_xyzv, "ndim", 0) == 3 else (-1, -1)
        expected = {
            "image_xyzv": (persons, landmarks, 4),
            "world_xyz": (persons, landmarks, 3),
            "presence": (persons, landmarks),
        }
        for name, shape in expected.items():
            value = getattr(self, name)
            if not isinstance(value, np.ndarray) or value.shape != shape or value.dtype != np.float32:
                got = (getattr(value, "shape", None), getattr(value, "dtype", type(value)))
                raise ValueError(f"{name}: expected shape {shape} float32, got {got}")

    @classmethod
    def none(cls, landmarks: int) -> FramePoses:
        """Nobody found."""
        return cls(
            image_xyzv=np.empty((0, landmarks, 4), np.float32),
            world_xyz=np.empty((0, landmarks, 3), np.float32),
            presence=np.empty((0, landmarks), np.float32),
        )

    @property
    def num_persons(self) -> int:
        return int(self.image_xyzv.shape[0])

    @property
    def num_landmarks(self) -> int:
        return int(self.image_xyzv.shape[1])


class FrameTracker(ABC):
    """One chunk's model state: called once per analysed frame, in frame order,
    with strictly increasing timestamps, then closed (a context manager).
    Frames that sampling skips are never given to it."""

    @abstractmethod
    def __call__(self, frame: np.ndarray, timestamp_ms: int) -> FramePoses:
        """The people in ``frame`` (RGB uint8 [H, W, 3]) shown at ``timestamp_ms``."""

    @abstractmethod
    def close(self) -> None:
        """Release what the tracker holds (the model's per-chunk state)."""

    def __enter__(self) -> FrameTracker:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()


class PoseBackend(ABC):
    """A model loaded once (``__init__``), tracking chunk after chunk (``start``)."""

    def __init__(self, settings: BackendSettings) -> None:
        self.settings = settings

    @property
    def skeleton(self) -> Skeleton:
        return self.settings.skeleton

    @property
    def num_poses(self) -> int:
        return self.settings.num_poses

    @abstractmethod
    def start(self) -> FrameTracker:
        """A fresh tracker for one chunk: no state from any earlier frame."""
