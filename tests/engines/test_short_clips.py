"""Short clips on the real engines: a track complete before Ray is up is analysed on a Dask
worker by the code the Ray actors run (and gives the same pose JSON, byte for byte); the
embedded Ray runs at low priority and starts one analyzer actor, more as tracks arrive."""

from __future__ import annotations

import os
import shutil

import numpy as np
import psutil
import pytest

from pipeline import PipelineConfig, VideoPipeline
from pipeline.analysis.analyzer import TrackMeta
from pipeline.engines import RAY_NICENESS, Engines
from pipeline.pose.types import PoseChunk


def _nice(pid: int) -> int:
    return psutil.Process(pid).nice()


def _ray_facts(pipeline: VideoPipeline) -> dict:
    """What the embedded Ray looks like after the run: the priorities of its processes and of
    the run's others, and its analyzer actors before and after two more tracks."""
    import ray

    engine = pipeline.ray
    node = ray._private.worker._global_node
    facts = {
        "ray_processes": {
            name: [_nice(info.process.pid) for info in infos] for name, infos in node.all_processes.items()
        },
        "dask_workers": [_nice(pid) for pid in pipeline.dask.worker_pids()],
        "driver_thread": os.getpriority(os.PRIO_PROCESS, 0),  # this (the main) thread, on Linux
        "actors_after_run": [_nice(pid) for pid in engine.actor_pids()],
    }
    empty = PoseChunk.empty(0, 12, 1, 30.0)
    for _ in range(2):
        engine.analyze(empty, TrackMeta(640, 360, 30.0)).result(timeout=120)
    facts["actors_after_more_tracks"] = [_nice(pid) for pid in engine.actor_pids()]
    return facts


@pytest.fixture(scope="module")
def runs(tmp_path_factory, sample_video):
    """The sample through the whole pipeline twice with the same settings and folders: with the
    analysis sent to Dask (Ray reported as not ready yet), then to Ray (reported ready: the
    analysis waits for it)."""
    work = tmp_path_factory.mktemp("short")
    config = PipelineConfig(
        quality="fast", num_poses=1, workers=2, analyzers=2, render_video=False, report=False, llm_data_dir=None,
        output_dir=str(work / "output"), models_dir=str(work / "models"),
    )  # fmt: skip
    found = {}
    for where, ready in (("dask", False), ("ray", True)):
        with pytest.MonkeyPatch.context() as patch:
            patch.setattr(Engines, "ray_ready", property(lambda self, ready=ready: ready))
            with VideoPipeline(config) as pipeline:
                batch = pipeline.process([sample_video])
                ray_facts = _ray_facts(pipeline) if where == "ray" else None
        assert batch.success, [video.error for video in batch.failed]
        (video,) = batch.videos
        with open(video.outputs["pose_json"], "rb") as fh:
            found[where] = {"pose_json": fh.read(), "marks": dict(pipeline.stats.videos[video.name])}
        found[where]["phases"] = pipeline.stats.to_dict()["phases_s"]["videos"][video.name]
        found[where]["ray"] = ray_facts
        shutil.rmtree(work / "output")  # the second run starts from nothing (no resume)
        shutil.rmtree(work / "models")
    return found


def test_analysis_on_dask_gives_the_same_pose_json_as_on_ray(runs):
    dask, ray = runs["dask"], runs["ray"]
    assert "analysis_on_dask" in dask["marks"] and dask["phases"]["analysis_on"] == "dask"
    assert "analysis_on_dask" not in ray["marks"] and "analysis_on" not in ray["phases"]
    assert len(dask["pose_json"]) > 100_000
    assert dask["pose_json"] == ray["pose_json"]


def test_embedded_ray_runs_at_low_priority_and_the_run_does_not(runs):
    facts = runs["ray"]["ray"]
    processes = facts["ray_processes"]
    assert {"gcs_server", "raylet"} <= set(processes)
    assert all(nice == RAY_NICENESS for values in processes.values() for nice in values), processes
    # Ray gives its workers a niceness of their own on top (RAY_worker_niceness, 15): the actors
    # end at least as low as the rest of Ray (19, the lowest, with Ray's default).
    assert facts["actors_after_run"] and all(nice >= RAY_NICENESS for nice in facts["actors_after_run"])
    # The driver's main thread and the Dask workers (the pose extraction) keep the normal priority.
    assert facts["driver_thread"] == 0
    assert facts["dask_workers"] == [0, 0]


def test_ray_starts_one_actor_and_adds_one_per_track_up_to_analyzers(runs):
    facts = runs["ray"]["ray"]
    assert len(facts["actors_after_run"]) == 1  # one video, one track: one actor
    assert len(facts["actors_after_more_tracks"]) == 2  # analyzers=2: one more, not two
    assert np.all(np.array(facts["actors_after_more_tracks"]) >= RAY_NICENESS)
