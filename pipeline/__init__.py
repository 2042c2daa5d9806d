"""Distributed video pose pipeline: MediaPipe pose on Dask, analysis on Ray."""

from pipeline.config import QUALITY_PRESETS, PipelineConfig
from pipeline.errors import (
    ClusterError,
    ConfigError,
    InputError,
    ModelError,
    OutputError,
    PipelineError,
    VideoError,
)
from pipeline.orchestrator import BatchResult, ProgressEvent, VideoPipeline, VideoResult, process_video, process_videos

__version__ = "0.1.0"

__all__ = [
    "QUALITY_PRESETS",
    "BatchResult",
    "ClusterError",
    "ConfigError",
    "InputError",
    "ModelError",
    "OutputError",
    "PipelineConfig",
    "PipelineError",
    "ProgressEvent",
    "VideoError",
    "VideoPipeline",
    "VideoResult",
    "process_video",
    "process_videos",
]
