"""The run timeline behind ``--stats``: steady-state window and start-up figures on known timings."""

from __future__ import annotations

import subprocess
import sys
import time

import pytest
from conftest import REPO

from pipeline.stats import ChunkTiming, RunStats, process_start_time, steady_state


def _chunk(worker: str, index: int, frames: int, started: float, finished: float) -> ChunkTiming:
    return ChunkTiming("clip", index, frames, worker, started, finished)


def test_steady_state_counts_frames_inside_the_window_where_every_worker_is_busy():
    chunks = [
        _chunk("a", 0, 100, 0.0, 10.0),  # 10 frames/s
        _chunk("a", 1, 100, 10.0, 20.0),
        _chunk("b", 2, 100, 2.0, 12.0),  # starts late: the window opens at 2
        _chunk("b", 3, 80, 12.0, 16.0),  # 20 frames/s; b is done at 16: the window closes
    ]
    got = steady_state(chunks)
    # In [2, 16]: a tracks 10 frames/s for 14 s (140), b 100 frames in [2, 12] and 80 in [12, 16].
    assert got["steady_window_s"] == pytest.approx(14.0)
    assert got["steady_fps"] == pytest.approx((140 + 100 + 80) / 14, abs=0.01)
    assert got["steady_workers"] == 2


def test_steady_state_opens_once_the_engines_have_started():
    chunks = [_chunk("a", 0, 100, 0.0, 10.0), _chunk("b", 1, 50, 0.0, 10.0)]
    got = steady_state(chunks, ready=5.0)
    assert got["steady_window_s"] == pytest.approx(5.0)
    assert got["steady_fps"] == pytest.approx((50 + 25) / 5)


def test_steady_state_without_an_overlap_is_none():
    chunks = [_chunk("a", 0, 100, 0.0, 5.0), _chunk("b", 1, 100, 6.0, 9.0)]
    assert steady_state(chunks)["steady_fps"] is None


def test_run_stats_derive_start_up_engine_starts_and_extraction_rate():
    stats = RunStats()
    for name, at in [("process_start", 100.0), ("dask_start", 100.5), ("ray_start", 100.5), ("dask_ready", 102.0),
                     ("first_chunk_submitted", 102.5), ("ray_ready", 106.0)]:  # fmt: skip
        stats.mark(name, at)
    stats.mark("dask_ready", 150.0)  # a mark keeps the first time it happened
    stats.chunk(_chunk("a", 0, 300, 102.6, 112.6))
    stats.chunk(_chunk("b", 1, 300, 102.7, 112.7))
    derived = stats.derived()
    assert derived["startup_s"] == pytest.approx(2.5)
    assert derived["dask_start_s"] == pytest.approx(1.5)
    assert derived["ray_start_s"] == pytest.approx(5.5)
    assert derived["extract_frames"] == 600
    assert derived["extract_fps"] == pytest.approx(600 / 10.1, abs=0.01)
    document = stats.to_dict()
    assert document["marks_s"]["first_chunk_submitted"] == pytest.approx(2.5)
    assert [c["index"] for c in document["chunks"]] == [0, 1]
    assert document["chunks"][0]["started"] == pytest.approx(2.6)


def test_process_start_time_is_when_the_interpreter_started():
    code = "import time, sys; sys.path.insert(0, '.'); from pipeline.stats import process_start_time; print(time.time() - process_start_time())"
    spawned = time.time()
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True)
    age = float(done.stdout)
    assert 0 <= age < time.time() - spawned + 0.05  # no older than the child itself, to a clock tick
    assert abs(time.time() - process_start_time()) < 24 * 3600


def test_phases_name_where_the_time_went():
    stats = RunStats()
    for name, at in (("process_start", 100.0), ("first_chunk_submitted", 102.5), ("engines_stop", 120.0)):
        stats.mark(name, at)
    stats.mark("engines_stopped", 121.25)
    stats.videos["clip"] = {
        "planned": 102.4, "analyze": 110.0, "analysis_on_dask": 110.0, "render": 110.5,
        "pose_json_written": 111.0, "annotated_video_written": 115.0, "done": 115.0,
    }  # fmt: skip
    phases = stats.to_dict()["phases_s"]
    assert phases["run"] == {"start_to_first_chunk": 2.5, "engines_stop": 1.25}
    assert phases["videos"]["clip"] == {
        "extract": 7.6, "analysis": 0.5, "outputs": 4.5, "pose_json": 0.5, "annotated_video": 4.5,
        "analysis_on": "dask",
    }  # fmt: skip
