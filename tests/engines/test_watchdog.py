"""The watchdog alone, with plain processes: a killed driver's descendants end (one that
ignores SIGTERM too), a driver that said stop keeps its processes, a reused PID is never
taken for a recorded process."""

from __future__ import annotations

import json
import subprocess
import sys
import time

import psutil
from conftest import REPO, alive

from pipeline.engines.watchdog import GRACE_S, _alive, descendants

# A driver: starts its watchdog, a child, a grandchild and a child that ignores SIGTERM,
# prints their PIDs, optionally tells the watchdog to stop, then waits to be killed.
DRIVER = """
import json, subprocess, sys, time
from pipeline.engines.watchdog import Watchdog
watchdog = Watchdog()
sleeper = subprocess.Popen(["sleep", "120"])
shell = subprocess.Popen(["sh", "-c", "sleep 120 & wait"])
stubborn = subprocess.Popen([sys.executable, "-c",
    "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(120)"])
time.sleep(1.0)  # the watchdog records them (every 0.25 s)
if sys.argv[1] == "stop":
    watchdog.stop()
print(json.dumps({"watchdog": watchdog.pid, "children": [sleeper.pid, shell.pid, stubborn.pid]}), flush=True)
time.sleep(120)
"""


def _start_driver(mode: str) -> tuple[subprocess.Popen, dict, list[psutil.Process]]:
    driver = subprocess.Popen(
        [sys.executable, "-c", DRIVER, mode], cwd=REPO, stdout=subprocess.PIPE, text=True,
        env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin"},
    )  # fmt: skip
    pids = json.loads(driver.stdout.readline())
    family = psutil.Process(driver.pid).children(recursive=True)
    return driver, pids, family


def test_the_descendants_of_a_killed_driver_end(started):
    driver, pids, family = _start_driver("watch")
    started += family
    assert len(family) >= 5  # watchdog, sleep, sh and its sleep, the stubborn one
    driver.kill()
    driver.wait()
    t0 = time.monotonic()
    deadline = t0 + GRACE_S + 10
    while alive(family) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert alive(family) == []
    # SIGTERM ended all but the one that ignores it, SIGKILL that one after the grace period
    assert time.monotonic() - t0 >= GRACE_S - 0.5


def test_a_driver_that_said_stop_keeps_its_processes(started):
    driver, pids, family = _start_driver("stop")
    started += family
    assert not psutil.pid_exists(pids["watchdog"]) or psutil.Process(pids["watchdog"]).status() == "zombie"
    driver.kill()
    driver.wait()
    time.sleep(1.0)
    children = [p for p in family if p.pid in pids["children"]]
    assert len(alive(children)) == 3


def test_a_reused_pid_is_not_a_recorded_process():
    table = {10: (1, 500, "S"), 11: (10, 600, "S"), 12: (11, 700, "Z"), 13: (99, 800, "R")}
    assert descendants(10, table) == {11: 600, 12: 700}
    assert _alive(11, 600, table)
    assert not _alive(11, 650, table)  # same PID, another start time: another process
    assert not _alive(12, 700, table)  # a zombie has ended
    assert not _alive(14, 900, table)
