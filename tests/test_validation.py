"""Options that cannot work are refused before anything starts, and the advice
for a run that does not fit the memory budget is advice that can be followed."""

from __future__ import annotations

import os
import re
import time

import psutil
import pytest
from conftest import error_lines, run_cli

from pipeline.cli import build_parser
from pipeline.config import MEMORY_LIMIT_RANGE, AnalysisParams, EventParams, LLMSettings, PipelineConfig
from pipeline.errors import ConfigError
from pipeline.memory import GiB, plan_resources
from pipeline.orchestrator import REFERENCE_FRAME_WH

FLOAT_OPTIONS = ("sample_fps", "memory_limit", "llm_poll_s", "val_fraction", "filter_cutoff")


@pytest.mark.parametrize("value", ["nan", "inf"])
def test_cli_refuses_non_finite_sample_fps_before_starting(tmp_path, sample_video, value):
    started = time.perf_counter()
    proc = run_cli("--video", str(sample_video), "--sample_fps", value, "--quality", "fast", cwd=tmp_path)
    elapsed = time.perf_counter() - started
    assert proc.returncode == 2, proc.stderr
    last = proc.stderr.strip().splitlines()[-1]
    assert last == f"pipeline.py: error: argument --sample_fps/--sample-fps: expected a finite number, got '{value}'"
    assert not (tmp_path / "output").exists() and not (tmp_path / "models").exists()
    assert elapsed < 20  # no engine started (an engine start alone takes seconds)


@pytest.mark.parametrize("option", FLOAT_OPTIONS)
@pytest.mark.parametrize("value", ["nan", "NaN", "inf", "-inf", "Infinity"])
def test_parser_refuses_non_finite_floats(option, value, capsys):
    with pytest.raises(SystemExit) as stop:
        build_parser().parse_args(["--video", "x.mp4", f"--{option}={value}"])
    assert stop.value.code == 2
    assert f": expected a finite number, got '{value}'" in capsys.readouterr().err


def test_parser_finds_every_float_option():
    """The options above are all the float options (a new one must be added to the list)."""
    floats = {a.dest for a in build_parser()._actions if a.type is not None and a.type.__name__ == "parse"}
    assert floats == set(FLOAT_OPTIONS)


@pytest.mark.parametrize("value", [float("nan"), float("inf"), float("-inf")])
@pytest.mark.parametrize(
    "make",
    [
        lambda v: PipelineConfig(sample_fps=v),
        lambda v: PipelineConfig(memory_limit=v),
        lambda v: PipelineConfig(num_poses=v),
        lambda v: LLMSettings(poll_s=v),
        lambda v: LLMSettings(val_fraction=v),
        lambda v: AnalysisParams(max_fill_gap_s=v),
        lambda v: AnalysisParams(min_visibility=v),
        lambda v: EventParams(min_flight_s=v),
    ],
    ids=[
        "sample_fps",
        "memory_limit",
        "num_poses",
        "poll_s",
        "val_fraction",
        "max_fill_gap_s",
        "min_visibility",
        "min_flight_s",
    ],
)
def test_python_api_refuses_non_finite_numbers(make, value):
    with pytest.raises(ConfigError, match=r"must be a finite number, got|got nan|got inf|got -inf"):
        make(value)


def test_finite_values_still_pass():
    assert PipelineConfig(sample_fps=10.0, memory_limit=0.3).sample_fps == 10.0
    assert LLMSettings(poll_s=0.5).poll_s == 0.5
    with pytest.raises(ConfigError, match="poll_s must be > 0"):
        LLMSettings(poll_s=0.0)


# -- advice for a run that does not fit -----------------------------------------------------
def _choices(error: str, fraction: float, workers: int) -> list[tuple[float, int]]:
    """Each (--memory_limit, --workers) the advice offers (the run's own value where it names none)."""
    advice = re.search(r"GiB needed \((.*)\)$", error).group(1)
    choices = []
    for option in re.split(r", or |: use ", advice):
        limit = re.search(r"--memory_limit (\d+(?:\.\d+)?)", option)
        fewer = re.search(r"--workers (\d+)", option)
        if limit or fewer:
            choices.append((float(limit.group(1)) if limit else fraction, int(fewer.group(1)) if fewer else workers))
    return choices


@pytest.mark.parametrize("total_gib", [4, 8, 23.5, 64])
@pytest.mark.parametrize("fraction, workers", [(0.4, 64), (0.05, 64), (0.1, 16), (0.9, 200)])
def test_workers_that_do_not_fit_get_advice_that_fits(total_gib, fraction, workers):
    total = int(total_gib * GiB)
    args = dict(cores=2, analyzers=None, largest_frame_wh=REFERENCE_FRAME_WH, render=True, total=total)
    with pytest.raises(ConfigError) as raised:
        plan_resources(fraction, workers=workers, **args)
    choices = _choices(str(raised.value), fraction, workers)
    assert choices, raised.value
    for limit, fewer in choices:
        assert MEMORY_LIMIT_RANGE[0] <= limit <= MEMORY_LIMIT_RANGE[1], raised.value
        assert 1 <= fewer <= workers, raised.value
        plan = plan_resources(limit, workers=fewer, **args)  # raises if the advice does not fit
        assert plan.workers == fewer


def test_cli_workers_64_advice_is_possible(tmp_path, sample_video):
    proc = run_cli("--video", str(sample_video), "--workers", "64", "--quality", "fast", cwd=tmp_path)
    assert proc.returncode == 2, proc.stderr
    [line] = error_lines(proc.stderr)
    assert line.startswith("error: memory budget ") and "cannot hold 64 worker(s)" in line
    limits = [float(x) for x in re.findall(r"--memory_limit (\d+(?:\.\d+)?)", line)]
    assert all(MEMORY_LIMIT_RANGE[0] <= x <= MEMORY_LIMIT_RANGE[1] for x in limits), line
    choices = _choices(line, 0.4, 64)
    assert choices and all(fewer < 64 for _, fewer in choices), line  # 64 workers fit no allowed limit here
    for limit, fewer in choices:
        plan_resources(
            limit, cores=os.cpu_count() or 1, workers=fewer, analyzers=None, largest_frame_wh=REFERENCE_FRAME_WH,
            render=True, total=psutil.virtual_memory().total,
        )  # fmt: skip
    assert not (tmp_path / "output" / ".work").exists()
