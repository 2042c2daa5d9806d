"""The chunk loop every pose backend runs in, and the backends of this process.

``track_chunk(spec, settings)`` is what an engine's task calls: the process's
backend for ``settings`` (loaded once, ``load_backend``) tracks the chunk's
frames with a fresh tracker (``run_chunk``).

Timestamps given to the tracker are the frames' own (``round(index * 1000 /
fps)`` ms), exactly what a sequential loop from frame 0 gives, so temporal
smoothing sees the same time steps. The frames of a variable-frame-rate video
carry the container's presentation times instead (``spec.variable_rate``), in
every chunk alike: a frame's time depends on the frame alone, never on where its
chunk starts, so the shadow of the next chunk's tracker (``_Shadow``) and that
tracker itself are fed the very same times.
"""

from __future__ import annotations

import logging
import os
import threading
from dataclasses import replace

import numpy as np

from pipeline.errors import VideoError
from pipeline.pose.backends import BackendSettings, FramePoses, FrameTracker, PoseBackend
from pipeline.pose.handover import HANDOVER_FRAMES, same_people
from pipeline.pose.types import Handover, PoseChunk
from pipeline.video.plan import ChunkSpec, is_sampled
from pipeline.video.reader import frame_table, iter_frames

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
    table, then the chunk's tail (``pipeline.pose.handover``): the frames after
    ``end`` it tracked while the next chunk's tracker caught up. A frame whose
    data cannot be decoded keeps its row, marked ``decoded`` false (and not
    sampled); the tracker goes on with the next one. The chunk keeps as many
    person slots as it used (at least one).
    """
    with backend.start() as tracker:
        return _run(backend, tracker, spec)


def _run(backend: PoseBackend, tracker: FrameTracker, spec: ChunkSpec) -> PoseChunk:
    first, stop = spec.warmup_start, spec.end + spec.tail_limit
    out = PoseChunk.empty(first, stop - first, backend.num_poses, spec.fps, backend.skeleton.num_landmarks)

    def want(index: int) -> bool:
        return is_sampled(index, spec.fps, spec.sample_fps)

    times = [] if spec.variable_rate else None
    missing: list[int] = []
    fed_ms = -1
    rows = 0
    handover = _Shadow(backend, spec) if spec.tail_limit else None
    try:
        for index, frame in iter_frames(
            spec.video_path, first, stop, want, times, "rgb24", missing, spec.frame_table_at
        ):
            row = index - first
            rows = row + 1
            if times is not None:  # variable frame rate: the container's time of this frame
                out.timestamp_ms[row] = times[-1]
            if frame is None:
                out.sampled[row] = False
                continue
            # This frame's own time, whichever chunk reads it: what the next chunk's tracker, and so the shadow, gets.
            frame_ms = int(round(out.timestamp_ms[row] if times is not None else index * 1000.0 / spec.fps))
            fed_ms = max(fed_ms + 1, frame_ms)  # a video model needs strictly increasing times
            poses = tracker(frame, fed_ms)
            _store(out, row, poses)
            if handover is not None and handover.feed(index, frame, frame_ms, poses):
                break  # the next chunk's tracker has caught up
    finally:
        if handover is not None:
            handover.close()
    lost = np.asarray(missing, dtype=np.int64) - first
    out.decoded[lost] = False
    if handover is not None and not handover.done and rows == out.num_frames:
        handover.end_of_tail()  # its last frames were not tracked (sampling, damage)
    if not (handover.done if handover is not None else rows == out.num_frames):
        raise VideoError(spec.video_path, f"it has {first + rows} frames now, not {stop}: it changed after the probe")
    kept = out.slice(spec.start - first, rows)
    used = max(1, int(kept.detected.any(axis=0).nonzero()[0].max(initial=-1)) + 1)
    kept = kept.with_slots(used)
    if handover is None:
        return kept
    return replace(kept, handover=Handover(tail=rows - (spec.end - first), settled=handover.settled))


class _Shadow:
    """The next chunk's tracker, run beside a chunk's own from ``spec.handover_start``:
    the chunk's tail ends once the two agree on ``HANDOVER_FRAMES`` frames running
    (``settled``), at ``spec.tail_limit`` frames past the end, or at the video's end."""

    def __init__(self, backend: PoseBackend, spec: ChunkSpec) -> None:
        self._backend = backend
        self._spec = spec
        self._tracker: FrameTracker | None = None
        self._fed_ms = -1
        self._agreeing = 0
        self.settled = False
        self.done = False  # the tail ended: settled, or at its limit

    def feed(self, index: int, frame: np.ndarray, frame_ms: int, poses: FramePoses) -> bool:
        """Track ``frame`` as the next chunk would; True when the tail ends with it."""
        spec = self._spec
        if index < spec.handover_start:
            return False
        if self._tracker is None:
            self._tracker = self._backend.start()
        self._fed_ms = max(self._fed_ms + 1, frame_ms)  # exactly the next chunk's timestamps
        theirs = self._tracker(frame, self._fed_ms)
        if index < spec.end:
            return False
        height, width = frame.shape[:2]
        self._agreeing = self._agreeing + 1 if same_people(poses, theirs, width, height) else 0
        if self._agreeing >= HANDOVER_FRAMES:
            self.settled = self.done = True
        elif index + 1 >= spec.end + spec.tail_limit:
            self.end_of_tail()
        return self.done

    def end_of_tail(self) -> None:
        """The tail reached its limit without agreement: unsettled, unless the limit is the video's end."""
        spec = self._spec
        self.done = True
        self.settled = self.settled or spec.end + spec.tail_limit >= len(
            frame_table(spec.video_path, spec.frame_table_at)
        )

    def close(self) -> None:
        if self._tracker is not None:
            self._tracker.close()
            self._tracker = None


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
