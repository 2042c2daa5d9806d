"""PoseChunk: the landmarks of a contiguous range of frames, numpy only."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np

from pipeline.pose.skeleton import DEFAULT_SKELETON

_FRAME_ARRAYS = ("frame_index", "timestamp_ms", "sampled", "decoded")
_PERSON_ARRAYS = ("image_xyzv", "world_xyz", "presence")
_ARRAYS = _FRAME_ARRAYS + _PERSON_ARRAYS
ARRAY_NAMES: tuple[str, ...] = _ARRAYS  # what a PoseChunk holds, in the order it is stored
PERSON_ARRAYS: tuple[str, ...] = _PERSON_ARRAYS  # those with a person slot axis (``[F, P, ...]``)


@dataclass(frozen=True)
class Handover:
    """How a chunk handed its people over to the next one (``pipeline.pose.handover``).

    ``tail``: frames tracked past the chunk's end (kept: they replace the next
    chunk's first rows); ``settled``: the next chunk's tracker had the same
    people at the end of the tail (true too when the tail reached the video's end).
    """

    tail: int
    settled: bool

    def to_array(self) -> np.ndarray:
        return np.array([self.tail, int(self.settled)], dtype=np.int64)

    @classmethod
    def from_array(cls, values: np.ndarray) -> Handover:
        return cls(int(values[0]), bool(values[1]))


@dataclass(frozen=True)
class PoseChunk:
    """Landmarks of frames ``frame_index[0] .. frame_index[-1]`` (contiguous).

    Shapes (F frames, P person slots = ``num_poses``, L landmarks = the
    backend's ``skeleton.num_landmarks``):

    - ``frame_index`` int64 [F], ``timestamp_ms`` float64 [F]
    - ``sampled`` bool [F]: the frame was given to the pose model
      (false when ``sample_fps`` skips it or its data could not be decoded)
    - ``decoded`` bool [F]: the frame's data could be decoded (all true when
      omitted); an undecodable frame keeps its row, unsampled and empty
    - ``image_xyzv`` float32 [F, P, L, 4]: x, y normalised to the frame
      width/height, z on roughly the scale of x, visibility in [0, 1]
    - ``world_xyz`` float32 [F, P, L, 3]: metres, origin between the hips
    - ``presence`` float32 [F, P, L]: probability that the landmark is in frame

    A person slot holds NaN where no person was found. Slots are in the
    model's order; identities across frames are linked by the analysis.

    ``handover``: set on a tracked chunk that is not the video's last; its
    last ``handover.tail`` rows are frames after the chunk's end.
    """

    frame_index: np.ndarray
    timestamp_ms: np.ndarray
    sampled: np.ndarray
    image_xyzv: np.ndarray
    world_xyz: np.ndarray
    presence: np.ndarray
    decoded: np.ndarray | None = None
    handover: Handover | None = None

    def __post_init__(self) -> None:
        frames = self.frame_index.shape[0]
        if self.decoded is None:
            object.__setattr__(self, "decoded", np.ones(frames, dtype=bool))
        persons, landmarks = self.image_xyzv.shape[1:3] if getattr(self.image_xyzv, "ndim", 0) == 4 else (-1, -1)
        expected = {
            "frame_index": ((frames,), np.int64),
            "timestamp_ms": ((frames,), np.float64),
            "sampled": ((frames,), np.bool_),
            "decoded": ((frames,), np.bool_),
            "image_xyzv": ((frames, persons, landmarks, 4), np.float32),
            "world_xyz": ((frames, persons, landmarks, 3), np.float32),
            "presence": ((frames, persons, landmarks), np.float32),
        }
        for name, (shape, dtype) in expected.items():
            value = getattr(self, name)
            if not isinstance(value, np.ndarray) or value.shape != shape or value.dtype != dtype:
                got = (getattr(value, "shape", None), getattr(value, "dtype", type(value)))
                raise ValueError(f"{name}: expected shape {shape} {np.dtype(dtype)}, got {got}")
        if frames > 1 and not np.array_equal(np.diff(self.frame_index), np.ones(frames - 1)):
            raise ValueError("frame_index must be contiguous and increasing")

    @classmethod
    def empty(
        cls, start: int, frames: int, num_poses: int, fps: float, landmarks: int = DEFAULT_SKELETON.num_landmarks
    ) -> PoseChunk:
        """``frames`` frames from ``start``, every slot empty (NaN), every frame sampled,
        timestamps ``index * 1000 / fps``; ``landmarks`` per person (the skeleton's count)."""
        index = np.arange(start, start + frames, dtype=np.int64)
        return cls(
            frame_index=index,
            timestamp_ms=index * (1000.0 / fps),
            sampled=np.ones(frames, dtype=bool),
            image_xyzv=np.full((frames, num_poses, landmarks, 4), np.nan, np.float32),
            world_xyz=np.full((frames, num_poses, landmarks, 3), np.nan, np.float32),
            presence=np.full((frames, num_poses, landmarks), np.nan, np.float32),
        )

    @classmethod
    def concatenate(cls, chunks: Sequence[PoseChunk]) -> PoseChunk:
        """Join chunks in frame order; raises ValueError on a gap or an overlap."""
        if not chunks:
            raise ValueError("expected at least one chunk, got none")
        ordered = sorted(chunks, key=lambda c: int(c.frame_index[0]) if c.num_frames else -1)
        return cls(**{name: np.concatenate([getattr(c, name) for c in ordered]) for name in _ARRAYS})

    def _map(self, pick) -> PoseChunk:
        """The same arrays, each indexed by ``pick`` (frame axis first)."""
        return PoseChunk(**{name: getattr(self, name)[pick] for name in _ARRAYS})

    def with_slots(self, slots: int) -> PoseChunk:
        """The same frames with ``slots`` person slots: empty (NaN) ones added, or the last ones dropped."""
        have = self.num_slots
        if slots == have:
            return self
        if slots < have:
            return replace(self, **{name: getattr(self, name)[:, :slots] for name in _PERSON_ARRAYS})
        padded = {}
        for name in _PERSON_ARRAYS:
            values = getattr(self, name)
            extra = np.full((values.shape[0], slots - have, *values.shape[2:]), np.nan, values.dtype)
            padded[name] = np.concatenate([values, extra], axis=1)
        return replace(self, **padded)

    @property
    def num_frames(self) -> int:
        return int(self.frame_index.shape[0])

    @property
    def num_slots(self) -> int:
        return int(self.image_xyzv.shape[1])

    @property
    def num_landmarks(self) -> int:
        return int(self.image_xyzv.shape[2])

    @property
    def detected(self) -> np.ndarray:
        """bool [F, P]: a person occupies the slot in the frame."""
        return ~np.isnan(self.image_xyzv[..., 0, 0])

    def slice(self, start: int, stop: int | None = None) -> PoseChunk:
        """Rows ``[start, stop)`` (positions, not frame numbers)."""
        return self._map(slice(start, stop))

    def reorder(self, order: np.ndarray) -> PoseChunk:
        """Person slots per frame from ``order [F, K]``: new slot ``k`` takes old
        slot ``order[f, k]``, or is empty (NaN) where it is -1. K may exceed the
        number of slots (one slot per person found over the whole track)."""
        rows = np.arange(self.num_frames)[:, None]
        empty = order < 0
        picked = {}
        for name in _PERSON_ARRAYS:
            values = getattr(self, name)[rows, np.where(empty, 0, order)]
            values[empty] = np.nan
            picked[name] = values
        return replace(self, **picked)
