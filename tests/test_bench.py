"""bench/run.py end to end in quick mode: the ceiling and the two pipeline runs on a 1-minute clip,
with the results, the tables and the docs page written into a temporary folder."""

from __future__ import annotations

import json
import subprocess
import sys

from conftest import REPO


def test_quick_suite_measures_the_pipeline_against_the_ceiling(sample_video, tmp_path):
    command = [sys.executable, "bench/run.py", "--quick", "--only", "ceiling,pipeline"]
    command += ["--source", str(sample_video), "--out", str(tmp_path)]
    done = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]

    results = json.loads((tmp_path / "results.json").read_text())
    assert results["quick"] is True
    assert results["sections"] == ["ceiling", "pipeline"]
    assert results["data"]["ceiling"]["fps"] > 0
    runs = results["data"]["pipeline"]["runs"]
    assert set(runs) == {"no_video", "video"}
    for run in runs.values():
        assert run["exit_code"] == 0
        assert run["steady_fps"] > 0
        assert 0 < run["efficiency_steady"] < 2
    assert results["data"]["pipeline"]["startup"]["startup_s"] > 0
    assert {t["name"] for t in results["targets"]} >= {"efficiency_steady", "startup_s", "memory_ratio"}

    assert "| measure | value | target | pass | command |" in (tmp_path / "results.md").read_text()
    doc = (tmp_path / "benchmarks.md").read_text()
    for marker in ("<!-- results:start -->", "<!-- results:end -->", "<!-- machine:start -->", "<!-- machine:end -->"):
        assert marker in doc
