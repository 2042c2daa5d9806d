"""``output/<name>_angles.csv``: the joint angles of every analysed frame and
person, one row each, for a spreadsheet or pandas.

Columns: ``frame``, ``time_s``, ``person`` (the pose JSON's ``id``), then one
column per joint angle in degrees (180 = straight), empty where the angle is
unknown. Frames where nobody was found, or that ``--sample_fps`` skipped, have
no row.
"""

from __future__ import annotations

import csv
import math

from pipeline import storage
from pipeline.analysis.store import AnalysisStore
from pipeline.config import PipelineConfig
from pipeline.outputs.registry import OutputPlan, OutputTask, OutputWriter, VideoOutputs
from pipeline.pose.skeleton import ANGLE_NAMES
from pipeline.storage import atomic_write

COLUMNS = ("frame", "time_s", "person", *ANGLE_NAMES)


def write_angles_csv(path: str, store: AnalysisStore) -> str:
    """Write the table from a stored analysis, a block of frames at a time."""

    def write(fh) -> None:
        writer = csv.writer(fh, lineterminator="\n")
        writer.writerow(COLUMNS)
        for block in store.blocks():
            track = block.track
            for row, lane, person in zip(*block.persons_shown()):  # by frame, then person
                angles = ["" if math.isnan(v) else round(v, 2) for v in block.angles[row, lane].tolist()]
                time_s = round(float(track.timestamp_ms[row]) / 1000.0, 4)
                writer.writerow([int(track.frame_index[row]), time_s, int(person), *angles])

    return atomic_write(path, write, text=True)


def angles_csv_task(path: str, store: str) -> str:
    """Task: the angles table from the stored analysis."""
    return write_angles_csv(path, AnalysisStore(store))


class AnglesCsvWriter(OutputWriter):
    name = "angles_csv"
    label = "angles CSV"

    def location(self, config: PipelineConfig, name: str) -> str:
        return storage.join(config.output_dir, f"{name}_angles.csv")

    def plan(self, video: VideoOutputs) -> OutputPlan:
        return OutputPlan([OutputTask(angles_csv_task, (self.target(video), video.store), f"angles-csv-{video.name}")])
