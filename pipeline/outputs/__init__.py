"""Writers of the run's outputs."""

from pipeline.outputs.pose_json import SCHEMA_VERSION, atomic_write_text, read_pose_json, write_pose_json

__all__ = ["SCHEMA_VERSION", "atomic_write_text", "read_pose_json", "write_pose_json"]
