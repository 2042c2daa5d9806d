"""Analysis of pose tracks: pure numpy, no engine imports."""

from pipeline.analysis.analyzer import Analysis, AnalysisParams, Analyzer, TrackMeta
from pipeline.analysis.compare import RunComparison, compare_runs
from pipeline.analysis.kinematics import angle_at, joint_angles
from pipeline.analysis.tracking import link_identities

__all__ = [
    "Analysis",
    "AnalysisParams",
    "Analyzer",
    "RunComparison",
    "TrackMeta",
    "angle_at",
    "compare_runs",
    "joint_angles",
    "link_identities",
]
