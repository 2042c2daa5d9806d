"""The chunk loop every pose backend runs in, and the backends of this process.

``track_chunk(spec, settings)`` is what an engine's task calls: the process's
backend for ``settings`` (loaded once, ``load_backend``) tracks the chunk's
frames with a fresh tracker (``run_chunk``).

Timestamps given to the tracker are the frames' own (``round(index * 1000 /
fps)`` ms), exactly what a sequential loop from frame 0 gives, so temporal
smoothing sees the same time steps. The frames of a variable-frame-rate video
carry the container's presentation times instead.
"""

from __future__ import annotations

import logging
import os
import threading

import numpy as np

from pipeline.errors import VideoError
from pipeline.pose.backends import BackendSettings, FramePoses, FrameTracker, PoseBackend
from pipeline.pose.types import PoseChunk
from pipeline.video.plan import ChunkSpec, is_sampled
from pipeline.video.reader import iter_frames

logger = logging.getLogger(__name__)

# One backend per settings, kept for the process's life.
_BACKENDS: dict[BackendSettings, PoseBackend] = {}
_BACKENDS_LOCK = threading.Lock()


def load_backend(settings: BackendSettings) -> PoseBackend:
    """This process's backend for ``settings``: loaded on first use, then reused."""
    with _BACKENDS_LOCK:
        backend = _BACKENDS.get(settings)
        if backend is None:
            backend = _BACKENDS[settings] = settings.backend(settings)
            logger.debug("pid %d: %s pose backend ready (%s)", os.getpid(), settings.backend_name, settings)
        return backend


def track_chunk(spec: ChunkSpec, settings: BackendSettings) -> PoseChunk:
    """The landmarks of ``spec``'s frames ``[start, end)`` (see ``run_chunk``)."""
    return run_chunk(load_backend(settings), spec)


def run_chunk(backend: PoseBackend, spec: ChunkSpec) -> PoseChunk:
    """Decode and track frames ``[warmup_start, end)`` with a fresh tracker of
    ``backend``; return ``[start, end)``, one row per frame of the video's frame
    table. A frame whose data cannot be decoded keeps its row, marked
    ``decoded`` false (and not sampled); the tracker goes on with the next one.
    """
    with backend.start() as tracker:
        return _run(tracker, spec, backend.num_poses, backend.skeleton.num_landmarks)


def _run(tracker: FrameTracker, spec: ChunkSpec, num_poses: int, landmarks: int) -> PoseChunk:
    first = spec.warmup_start
    out = PoseChunk.empty(first, spec.end - first, num_poses, spec.fps, landmarks)

    def want(index: int) -> bool:
        return is_sampled(index, spec.fps, spec.sample_fps)

    times = [] if spec.variable_rate else None
    missing: list[int] = []
    fed_ms = -1
    rows = 0
    for index, frame in iter_frames(spec.video_path, first, spec.end, want, times, "rgb24", missing):
        row = index - first
        rows = row + 1
        if times is not None:  # variable frame rate: the container's time of this frame
            out.timestamp_ms[row] = times[-1]
        if frame is None:
            out.sampled[row] = False
            continue
        frame_ms = int(round(out.timestamp_ms[row] if times is not None else index * 1000.0 / spec.fps))
        fed_ms = max(fed_ms + 1, frame_ms)  # a video model needs strictly increasing times
        _store(out, row, tracker(frame, fed_ms))
    lost = np.asarray(missing, dtype=np.int64) - first
    out.decoded[lost] = False
    if rows != out.num_frames:
        raise VideoError(
            spec.video_path, f"it has {first + rows} frames now, not {spec.end}: it changed after the probe"
        )
    return out.slice(spec.start - first)


def _store(out: PoseChunk, row: int, poses: FramePoses) -> None:
    found = poses.num_persons
    if found > out.num_slots or poses.num_landmarks != out.num_landmarks:
        raise ValueError(
            f"tracker result: expected at most {out.num_slots} persons of {out.num_landmarks} landmarks, "
            f"got {found} of {poses.num_landmarks}"
        )
    out.image_xyzv[row, :found] = poses.image_xyzv
    out.world_xyz[row, :found] = poses.world_xyz
    out.presence[row, :found] = poses.presence
