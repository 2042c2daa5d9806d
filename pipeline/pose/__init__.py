"""Pose estimation: model files, the landmarker wrapper, skeleton, result types.

Nothing here knows about Dask or Ray.
"""

from pipeline.pose.estimator import EstimatorSettings, PoseEstimator
from pipeline.pose.models import MODEL_PRESETS, ModelFile, resolve_model
from pipeline.pose.skeleton import ANGLE_NAMES, CONNECTIONS, JOINT_ANGLES, LANDMARK_NAMES
from pipeline.pose.types import PoseChunk

__all__ = [
    "ANGLE_NAMES",
    "CONNECTIONS",
    "JOINT_ANGLES",
    "LANDMARK_NAMES",
    "MODEL_PRESETS",
    "EstimatorSettings",
    "ModelFile",
    "PoseChunk",
    "PoseEstimator",
    "resolve_model",
]
