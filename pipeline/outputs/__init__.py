"""Writers of the run's outputs."""

from pipeline.outputs.annotate import Annotator
from pipeline.outputs.pose_json import SCHEMA_VERSION, read_pose_json, write_pose_json
from pipeline.outputs.report import write_report
from pipeline.outputs.summary_csv import write_summary_csv

__all__ = [
    "SCHEMA_VERSION",
    "Annotator",
    "read_pose_json",
    "write_pose_json",
    "write_report",
    "write_summary_csv",
]
