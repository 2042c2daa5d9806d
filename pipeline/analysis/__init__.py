"""Analysis of pose tracks: pure numpy, no engine imports."""

from pipeline.analysis.analyzer import Analysis, AnalysisParams, Analyzer, TrackMeta
from pipeline.analysis.body import VELOCITY_POINTS, body_height, centre_of_mass
from pipeline.analysis.compare import RunComparison, compare_runs
from pipeline.analysis.events import EventParams, count_repetitions, detect_flights
from pipeline.analysis.kinematics import angle_at, joint_angles
from pipeline.analysis.sports import SPORT_PROFILES, SportProfile
from pipeline.analysis.tracking import link_identities

__all__ = [
    "SPORT_PROFILES",
    "VELOCITY_POINTS",
    "Analysis",
    "AnalysisParams",
    "Analyzer",
    "EventParams",
    "RunComparison",
    "SportProfile",
    "TrackMeta",
    "angle_at",
    "body_height",
    "centre_of_mass",
    "compare_runs",
    "count_repetitions",
    "detect_flights",
    "joint_angles",
    "link_identities",
]
