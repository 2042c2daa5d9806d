"""Writers of the run's outputs, registered by name (``registry.py``).

The order of registration is the order in which a video's outputs are started.
"""

from pipeline.outputs.angles_csv import AnglesCsvWriter
from pipeline.outputs.annotate import Annotator
from pipeline.outputs.opensim import OpenSimWriter
from pipeline.outputs.pose_json import SCHEMA_VERSION, PoseJsonWriter, read_pose_json, write_pose_json
from pipeline.outputs.registry import REGISTRY, OutputPlan, OutputTask, OutputWriter, VideoOutputs, register
from pipeline.outputs.render import AnnotatedVideoWriter
from pipeline.outputs.report import ReportWriter, write_report
from pipeline.outputs.summary_csv import write_summary_csv
from pipeline.outputs.tables import TablesWriter

register(PoseJsonWriter())
register(AnnotatedVideoWriter())
register(ReportWriter())
register(AnglesCsvWriter())
register(TablesWriter())
register(OpenSimWriter())

__all__ = [
    "REGISTRY",
    "SCHEMA_VERSION",
    "Annotator",
    "OutputPlan",
    "OutputTask",
    "OutputWriter",
    "VideoOutputs",
    "read_pose_json",
    "register",
    "write_pose_json",
    "write_report",
    "write_summary_csv",
]
