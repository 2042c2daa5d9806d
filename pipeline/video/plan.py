"""Chunk plan: which contiguous frame ranges the Dask tasks decode and keep."""

from __future__ import annotations

import math
from dataclasses import dataclass

from pipeline.errors import ConfigError
from pipeline.video.probe import VideoInfo

# Each chunk costs a landmarker, a seek (decoding from the key frame before it) and its
# warm-up frames: about 0.4 s, or 25-30 frames' worth, on the development machine.
# A chunk shorter than this spends too large a share of its time on that.
MIN_AUTO_CHUNK_FRAMES = 100
MAX_AUTO_CHUNK_FRAMES = 1800  # about a minute at 30 fps: the grain of progress and resume
CHUNKS_PER_WORKER = 2
# The longest tail a chunk tracks past its end for the next chunk to catch up (``pipeline.pose.handover``),
# seconds. The longest measured need was 115 frames (3.8 s at 30 fps, bench/reacquire.py on the sample
# clip); the cap allows 2.5 times that and bounds what a scene no detector resolves can cost.
MAX_HANDOVER_S = 10.0


@dataclass(frozen=True)
class ChunkSpec:
    """Frames ``[start, end)`` of one video, kept; ``[warmup_start, start)`` decoded
    and tracked only (none by default: the previous chunk's tail covers the start).

    ``tail_limit``: frames after ``end`` the chunk may go on tracking while the
    next chunk's tracker, which starts at ``handover_start``, catches up
    (``pipeline.pose.handover``); 0 for the last chunk.

    Frame numbers are those of the video's frame table (``probe.FrameTable``);
    ``is_last`` marks the chunk that ends at the table's last frame.
    """

    video_path: str
    index: int
    start: int
    end: int
    warmup_start: int
    fps: float
    sample_fps: float | None
    is_last: bool
    variable_rate: bool = False  # take each frame's time from the container
    tail_limit: int = 0
    handover_start: int | None = None  # the next chunk's warmup_start
    frame_table_at: str | None = None  # where the run stored the video's frame table (a video on object storage)

    def __post_init__(self) -> None:
        if not 0 <= self.warmup_start <= self.start < self.end:
            raise ValueError(
                f"expected 0 <= warmup_start <= start < end, got {self.warmup_start}, {self.start}, {self.end}"
            )
        if self.tail_limit < 0 or (self.tail_limit > 0) != (self.handover_start is not None):
            raise ValueError(f"expected a handover_start with a tail, got {self.tail_limit}, {self.handover_start}")
        if self.handover_start is not None and not self.warmup_start <= self.handover_start <= self.end:
            raise ValueError(f"expected warmup_start <= handover_start <= end, got {self.handover_start}")

    @property
    def frame_count(self) -> int:
        return self.end - self.start


def is_sampled(index: int, fps: float, sample_fps: float | None) -> bool:
    """Whether frame ``index`` is analysed when sampling ``sample_fps`` frames per second.

    Frame ``i`` is kept when it is the first frame of the ``k``-th sampling
    period ``[k / sample_fps, (k + 1) / sample_fps)``. Frame 0 is always kept.
    """
    if sample_fps is None or sample_fps >= fps:
        return True
    if index == 0:
        return True
    ratio = sample_fps / fps
    return math.floor(index * ratio + 1e-9) != math.floor((index - 1) * ratio + 1e-9)


def auto_batch_size(frame_count: int, workers: int, batch_frames: int | None = None) -> int:
    """Frames per task for a video of ``frame_count`` frames in a batch of ``batch_frames``.

    The batch as a whole is cut into about ``CHUNKS_PER_WORKER`` chunks per
    worker, each between ``MIN_AUTO_CHUNK_FRAMES`` and ``MAX_AUTO_CHUNK_FRAMES``
    (few chunks: each one pays a landmarker, a seek and its warm-up). A video
    shorter than that is one chunk (the other videos keep the workers busy). A
    longer one is cut into a multiple of ``workers`` equal chunks, so that no
    chunk runs alone at the end while the other workers wait.
    """
    batch_frames = max(batch_frames or frame_count, frame_count)
    target = math.ceil(batch_frames / max(1, workers * CHUNKS_PER_WORKER))
    target = min(MAX_AUTO_CHUNK_FRAMES, max(MIN_AUTO_CHUNK_FRAMES, target))
    chunks = max(1, frame_count // target)
    if chunks >= workers:
        chunks -= chunks % workers
    return max(1, math.ceil(frame_count / chunks))


def plan_chunks(
    info: VideoInfo,
    batch_size: int,
    warmup_frames: int,
    sample_fps: float | None = None,
    handover_s: float = MAX_HANDOVER_S,
) -> list[ChunkSpec]:
    """Split ``info``'s frames into contiguous chunks of ``batch_size`` frames.

    With ``sample_fps`` the warm-up is stretched so it still feeds
    ``warmup_frames`` analysed frames to the landmarker. Every chunk but the
    last may track up to ``handover_s`` seconds past its end (to the video's
    end at most) while the next one catches up.

    A variable-frame-rate video is cut like any other: frame numbers are those
    of the frame table, the reader seeks to an exact presentation timestamp,
    and each chunk takes its frames' times from the container
    (``ChunkSpec.variable_rate``), so its chunks see what one pass does.
    """
    if batch_size < 1:
        raise ConfigError(f"batch_size must be >= 1, got {batch_size}")
    if warmup_frames < 0:
        raise ConfigError(f"warmup_frames must be >= 0, got {warmup_frames}")
    stride = 1.0
    if sample_fps is not None and sample_fps < info.fps:
        stride = info.fps / sample_fps
    warmup_span = math.ceil(warmup_frames * stride)
    if handover_s < 0:
        raise ConfigError(f"handover_s must be >= 0, got {handover_s}")
    # Counted in frames at ``info.fps``, which for a variable-frame-rate video is the average rate:
    # a tail over slower frames may last longer than ``handover_s`` seconds, one over faster frames
    # shorter. That is acceptable: the cap bounds the work (frames tracked twice), not the time, and
    # a tail ends long before it once the next chunk's tracker agrees.
    tail_span = math.ceil(handover_s * info.fps)
    chunks = []
    starts = range(0, info.frame_count, batch_size)
    for i, start in enumerate(starts):
        end = min(start + batch_size, info.frame_count)
        last = i == len(starts) - 1
        tail = 0 if last else min(tail_span, info.frame_count - end)
        chunks.append(
            ChunkSpec(
                video_path=info.path,
                index=i,
                start=start,
                end=end,
                warmup_start=max(0, start - warmup_span),
                fps=info.fps,
                sample_fps=sample_fps,
                is_last=last,
                variable_rate=info.variable_frame_rate,
                tail_limit=tail,
                handover_start=max(0, end - warmup_span) if tail else None,
            )
        )
    return chunks
