"""MemoryMonitor: the budget plan, the process-tree measurement, backpressure,
and a whole run held under a tight budget while an independent sampler watches."""

from __future__ import annotations

import contextlib
import re
import subprocess
import sys
import threading
import time

import psutil
import pytest
from conftest import run_cli

from pipeline.errors import ConfigError
from pipeline.memory import GiB, MemoryMonitor, MiB, plan_resources, tree_rss

TOTAL = 16 * GiB


def test_auto_workers_take_what_the_budget_holds():
    roomy = plan_resources(
        0.4, cores=8, workers=None, analyzers=None, largest_frame_wh=(1920, 1080), render=True, total=TOTAL
    )
    tight = plan_resources(
        0.15, cores=8, workers=None, analyzers=None, largest_frame_wh=(1920, 1080), render=True, total=TOTAL
    )
    assert roomy.workers == 8 and roomy.analyzers == 2
    assert 1 <= tight.workers < roomy.workers
    for plan in (roomy, tight):
        assert plan.fixed + plan.task_reserve <= plan.budget
        assert plan.low_mark <= plan.high_mark < plan.budget
        assert plan.worker_limit > 0 and plan.object_store >= 80 * MiB


def test_budget_that_cannot_hold_one_worker_says_what_it_needs():
    with pytest.raises(ConfigError, match=r"about \d+\.\d+ GiB needed \(--memory_limit 0\.\d+"):
        plan_resources(
            0.05, cores=2, workers=None, analyzers=None, largest_frame_wh=(1920, 1080), render=True, total=8 * GiB
        )


def test_explicit_workers_that_do_not_fit_fail_with_advice():
    with pytest.raises(
        ConfigError, match=r"use at most --workers \d+, or at most --workers \d+ with --memory_limit 0.95"
    ):
        plan_resources(
            0.2, cores=2, workers=16, analyzers=None, largest_frame_wh=(3840, 2160), render=True, total=TOTAL
        )


def test_larger_frames_need_more_room_per_task():
    hd = plan_resources(0.4, cores=2, workers=2, analyzers=1, largest_frame_wh=(1920, 1080), render=True, total=TOTAL)
    uhd = plan_resources(0.4, cores=2, workers=2, analyzers=1, largest_frame_wh=(3840, 2160), render=True, total=TOTAL)
    assert uhd.task_reserve == pytest.approx(4 * hd.task_reserve, rel=0.15)


def _allocating_child(mib: int) -> subprocess.Popen:
    """A real process that holds ``mib`` MiB of touched memory until told to exit."""
    code = f"import sys; b = bytearray({mib} * 1024 * 1024); b[::4096] = b'x' * len(b[::4096]); print('ready', flush=True); sys.stdin.read()"
    child = subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    assert child.stdout.readline().strip() == "ready"
    return child


def test_tree_rss_counts_children_and_monitor_holds_above_high_mark():
    base = tree_rss([psutil.Process().pid])
    monitor = MemoryMonitor(budget=base + 900 * MiB, high=base + 250 * MiB, low=base + 150 * MiB)
    monitor.sample()
    assert monitor.may_submit()
    child = _allocating_child(400)
    try:
        # The process tree is listed again every tree_interval_s (0.5 s): a new child counts from then on.
        time.sleep(monitor.tree_interval_s)
        total = monitor.sample()
        assert total - base >= 380 * MiB  # the child's memory is part of the tree
        assert not monitor.may_submit() and monitor.pauses == 1
    finally:
        child.stdin.close()
        child.wait(timeout=10)
    monitor.sample()
    assert monitor.may_submit()  # below the low mark again
    assert monitor.peak >= base + 380 * MiB


def test_memory_an_engine_is_about_to_take_counts_until_it_is_up():
    """The embedded Ray grows for seconds after it is started: the bytes it will hold count as in
    use (admission and the high mark) until it is up; the peak stays what was measured."""
    base = tree_rss([psutil.Process().pid])
    monitor = MemoryMonitor(budget=base + 900 * MiB, high=base + 250 * MiB, low=base + 150 * MiB)
    monitor.expect(300 * MiB)
    assert monitor.expecting and monitor.current >= base + 300 * MiB
    assert not monitor.may_submit()
    assert monitor.peak < base + 300 * MiB  # expected, not measured
    monitor.expect(0)
    assert not monitor.expecting and monitor.current < base + 150 * MiB
    assert monitor.may_submit()


class TreeSampler:
    """Independent of the pipeline: sums RSS over a process tree every 100 ms."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.peak = 0
        self.samples = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def _loop(self) -> None:
        root = psutil.Process(self.pid)
        while not self._stop.is_set():
            try:
                procs = [root, *root.children(recursive=True)]
            except psutil.Error:
                break
            total = 0
            for proc in procs:
                with contextlib.suppress(psutil.Error):
                    total += proc.memory_info().rss
            self.peak = max(self.peak, total)
            self.samples += 1
            time.sleep(0.1)

    def __enter__(self) -> TreeSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join(timeout=5)


def test_run_under_a_tight_budget_holds_it_and_keeps_every_frame(tmp_path, sample_video):
    """2.25 GiB holds the engines and two tasks but not everything at once: the
    monitor has to hold submissions back while the annotated video is rendered."""
    import json

    budget = 2.25 * GiB
    fraction = budget / psutil.virtual_memory().total
    args = [
        "--video", str(sample_video), "--output", "out", "--models", "models", "--quality", "fast",
        "--workers", "2", "--analyzers", "1", "--memory_limit", f"{fraction:.4f}", "--quiet",
    ]  # fmt: skip
    from conftest import REPO

    child = subprocess.Popen(
        [sys.executable, str(REPO / "pipeline.py"), *args],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    with TreeSampler(child.pid) as sampler:
        stdout, stderr = child.communicate(timeout=600)
    assert child.returncode == 0, stderr[-2000:]
    assert sampler.samples > 50
    held = re.search(r"submissions held (\d+) time", stdout)
    assert held and int(held.group(1)) >= 1, stdout  # backpressure really engaged
    assert sampler.peak <= fraction * psutil.virtual_memory().total, f"peak {sampler.peak / GiB:.2f} GiB"
    pose = json.loads((tmp_path / "models" / "demo_pose.json").read_text())
    assert [f["frame"] for f in pose["frames"]] == list(range(230))
    import av

    with av.open(str(tmp_path / "out" / "demo_annotated.mp4")) as container:
        assert sum(1 for _ in container.decode(video=0)) == 230


def test_cli_refuses_a_budget_it_cannot_hold(tmp_path, sample_video):
    fraction = max(0.05, 0.5 * GiB / psutil.virtual_memory().total)
    if fraction * psutil.virtual_memory().total > 1.5 * GiB:
        pytest.skip("this machine's smallest allowed budget (0.05 of RAM) holds a run")
    result = run_cli("--video", str(sample_video), "--memory_limit", f"{fraction:.3f}", "--workers", "2", cwd=tmp_path)
    assert result.returncode == 2, result.stderr
    assert re.search(r"error: memory budget .* GiB needed", result.stderr)
    assert not (tmp_path / "output" / ".work").exists()


def test_a_task_that_can_never_fit_fails_its_video_with_the_amounts(tmp_path, sample_video):
    """A budget a little above what one worker needs: extracting 4K frames fits,
    but encoding them (about 0.9 GiB for x264's buffers) cannot fit next to the
    engines (at least 1.1 GiB at rest): the video fails saying so."""
    import media

    uhd = media.four_k(tmp_path / "clips", sample_video)
    fraction = 1.9 * GiB / psutil.virtual_memory().total
    result = run_cli(
        "--video", str(uhd), "--quality", "fast", "--workers", "1", "--analyzers", "1",
        "--memory_limit", f"{fraction:.4f}", cwd=tmp_path,
    )  # fmt: skip
    assert result.returncode == 1, result.stderr
    [line] = [line for line in result.stderr.splitlines() if line.startswith("FAILED")]
    assert re.fullmatch(
        rf"FAILED {re.escape(str(uhd))}: memory budget exceeded: the run uses \d+ MiB at rest and one render task "
        r"for 3840x2160 frames needs about \d+ MiB more; the budget is \d+ MiB \(raise --memory_limit .*\)",
        line,
    ), line
    assert not (tmp_path / "output" / "uhd_annotated.mp4").exists()
