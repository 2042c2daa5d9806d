"""Outputs are registered writers: the orchestrator runs whatever is registered,
knowing none by name. One run of the Python API on the sample clip (two people)
with an extra writer registered by the test shows the seam, checks the angles
CSV against the pose JSON, and shows that ``process_videos`` runs the LLM step
as the command line does."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import pytest

from pipeline import PipelineConfig, process_videos
from pipeline.outputs.angles_csv import COLUMNS
from pipeline.outputs.registry import REGISTRY, OutputPlan, OutputTask, OutputWriter, VideoOutputs
from pipeline.pose.skeleton import ANGLE_NAMES


class PersonCountWriter(OutputWriter):
    """A small output made up by the test: the number of people per analysed frame, one line each."""

    name = "person_counts"
    label = "person counts"

    def location(self, config, name):
        return str(Path(config.output_dir) / f"{name}_person_counts.txt")

    def plan(self, video: VideoOutputs) -> OutputPlan:
        def count(path: str, store: str) -> str:  # runs on a Dask worker (pickled by value)
            from pipeline.analysis.store import AnalysisStore
            from pipeline.storage import write_text

            track = AnalysisStore(store).read().track
            lines = [f"{f} {n}" for f, n in zip(track.frame_index.tolist(), track.detected.sum(axis=1).tolist())]
            return write_text(path, "\n".join(lines) + "\n")

        return OutputPlan([OutputTask(count, (self.target(video), video.store), f"person-counts-{video.name}")])


@pytest.fixture(scope="module")
def run(tmp_path_factory, sample_video):
    folder = tmp_path_factory.mktemp("registry")
    writer = REGISTRY.register(PersonCountWriter())
    try:
        config = PipelineConfig(
            output_dir=str(folder / "output"),
            models_dir=str(folder / "models"),
            llm_data_dir=str(folder / "llm"),
            quality="fast",
            num_poses=2,
            render_video=False,
            report=False,
        )
        batch = process_videos([sample_video], config)
    finally:
        REGISTRY.writers.remove(writer)
    return folder, batch


def test_a_registered_writer_runs_without_any_other_change(run):
    folder, batch = run
    [video] = batch.videos
    assert video.success, video.error
    assert set(video.outputs) == {"pose_json", "angles_csv", "tables", "opensim", "llm_examples", "person_counts"}
    counts = Path(video.outputs["person_counts"]).read_text().splitlines()
    with open(video.outputs["pose_json"], encoding="utf-8") as fh:
        frames = json.load(fh)["frames"]
    assert counts == [f"{f['frame']} {len(f['persons'])}" for f in frames]


def test_angles_csv_matches_the_pose_json(run):
    _, batch = run
    [video] = batch.videos
    with open(video.outputs["pose_json"], encoding="utf-8") as fh:
        frames = json.load(fh)["frames"]
    with open(video.outputs["angles_csv"], newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    assert tuple(rows[0]) == COLUMNS
    expected = [(f["frame"], round(f["timestamp_ms"] / 1000.0, 4), p) for f in frames for p in f["persons"]]
    assert len(rows) == len(expected) > 200  # two people over most of the 230 frames
    assert len({row["person"] for row in rows}) >= 2
    for row, (frame, time_s, person) in zip(rows, expected):
        assert (int(row["frame"]), float(row["time_s"]), int(row["person"])) == (frame, time_s, person["id"])
        for name in ANGLE_NAMES:
            value = person["angles"][name]
            assert (row[name] == "") if value is None else math.isclose(float(row[name]), value, abs_tol=0.006)


def test_process_videos_runs_the_llm_step(run):
    folder, batch = run
    assert batch.llm is not None and batch.llm.ok, batch.llm and batch.llm.lines
    card = json.loads((folder / "llm" / "dataset.json").read_text())
    assert card["splits"]["train"]["examples"] + card["splits"]["val"]["examples"] > 0
    assert any(line.startswith("LLM data:") for line in batch.llm.lines)
