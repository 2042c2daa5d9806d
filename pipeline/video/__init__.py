"""Video probing, chunk planning and frame decoding (no engine imports)."""

from pipeline.video.plan import ChunkSpec, auto_batch_size, is_sampled, plan_chunks
from pipeline.video.probe import VIDEO_EXTENSIONS, VideoInfo, open_capture, probe_video
from pipeline.video.reader import iter_frames

__all__ = [
    "VIDEO_EXTENSIONS",
    "ChunkSpec",
    "VideoInfo",
    "auto_batch_size",
    "is_sampled",
    "iter_frames",
    "open_capture",
    "plan_chunks",
    "probe_video",
]
