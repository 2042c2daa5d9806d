"""Pose estimation: model files, backends (MediaPipe, ...), the chunk loop
they share, skeletons and result types.

Nothing here knows about Dask or Ray.
"""

from pipeline.pose.backends import BackendSettings, FramePoses, FrameTracker, PoseBackend
from pipeline.pose.backends.mediapipe import MediaPipeSettings
from pipeline.pose.chunks import load_backend, run_chunk, track_chunk
from pipeline.pose.models import MODEL_PRESETS, ModelFile, resolve_model
from pipeline.pose.skeleton import ANGLE_NAMES, BLAZEPOSE_33, CONNECTIONS, JOINT_ANGLES, LANDMARK_NAMES, Skeleton
from pipeline.pose.types import PoseChunk

__all__ = [
    "ANGLE_NAMES",
    "BLAZEPOSE_33",
    "CONNECTIONS",
    "JOINT_ANGLES",
    "LANDMARK_NAMES",
    "MODEL_PRESETS",
    "BackendSettings",
    "FramePoses",
    "FrameTracker",
    "MediaPipeSettings",
    "ModelFile",
    "PoseBackend",
    "PoseChunk",
    "Skeleton",
    "load_backend",
    "resolve_model",
    "run_chunk",
    "track_chunk",
]
