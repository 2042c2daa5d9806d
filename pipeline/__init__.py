"""Distributed video pose pipeline: MediaPipe pose on Dask, analysis on Ray."""

from pipeline.config import QUALITY_PRESETS, LLMSettings, PersonHeight, PipelineConfig, QualityPreset
from pipeline.errors import (
    ClusterError,
    ConfigError,
    InputError,
    ModelError,
    OutputError,
    PipelineError,
    VideoError,
)
from pipeline.orchestrator import VideoPipeline, process_video, process_videos
from pipeline.results import BatchResult, ChunkEvent, ProgressEvent, VideoResult

__version__ = "0.1.0"

__all__ = [
    "QUALITY_PRESETS",
    "BatchResult",
    "ChunkEvent",
    "ClusterError",
    "ConfigError",
    "InputError",
    "LLMSettings",
    "ModelError",
    "OutputError",
    "PersonHeight",
    "PipelineConfig",
    "PipelineError",
    "ProgressEvent",
    "QualityPreset",
    "VideoError",
    "VideoPipeline",
    "VideoResult",
    "process_video",
    "process_videos",
]
