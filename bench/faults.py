"""Time from a fault to the end of the run, several runs each, median.

    .venv/bin/python bench/faults.py [--runs N] [--only CASE,...] [--out FILE]

Cases (each run in a fresh temporary folder, pipeline.py --quality fast --no_video --no_report
--no_llm_data --quiet, on the sample repeated to 30 s, bench/.cache/demo-0.5min.mp4):

  ray_unreachable    --ray_address 127.0.0.1:PORT where nothing listens: start to exit (code 3)
  dask_unreachable   --dask_address tcp://127.0.0.1:PORT where nothing listens: start to exit (code 3)
  ray_silent         --ray_address of a port that accepts connections and never answers: start to exit (3)
  dask_silent        the same for --dask_address: start to exit (code 3)
  driver_kill9       once Ray's agents run and a chunk is on disk: kill -9 of the driver to the moment
                     none of the processes it had (Ray's, Dask's) is left
  sigterm            the same moment, SIGTERM to the driver: signal to exit (code 143), and to the
                     moment none of its processes is left
  raylet_kill        the same moment, kill -9 of the run's raylet (a descendant of the driver): kill
                     to exit (code 3), and to the moment none of its processes is left

Prints a table and writes the runs as JSON (default bench/faults.json). Only processes this
script started are signalled, by PID (the driver, its descendants found by walking its children).
"""

from __future__ import annotations

import argparse
import json
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

import psutil
from common import ROOT, kill, make_clip

FLAGS = ["--quality", "fast", "--no_video", "--no_report", "--no_llm_data", "--quiet", "--batch_size", "100"]
CASES = ("ray_unreachable", "dask_unreachable", "ray_silent", "dask_silent", "driver_kill9", "sigterm", "raylet_kill")


def _alive(procs: list[psutil.Process]) -> list[psutil.Process]:
    alive = []
    for proc in procs:
        try:
            if proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE:
                alive.append(proc)
        except psutil.NoSuchProcess:
            continue
    return alive


def _descendants(driver: psutil.Process) -> list[psutil.Process]:
    try:
        return driver.children(recursive=True)
    except psutil.NoSuchProcess:
        return []


def _find(driver: psutil.Process, fragment: str) -> psutil.Process | None:
    for proc in _descendants(driver):
        try:
            if fragment in proc.name():
                return proc
        except psutil.NoSuchProcess:
            continue
    return None


class SilentPort:
    """A port on 127.0.0.1 that accepts connections and never answers."""

    def __enter__(self) -> int:
        self.server = socket.create_server(("127.0.0.1", 0))
        self.accepted: list[socket.socket] = []
        self.thread = threading.Thread(target=self._accept, daemon=True)
        self.thread.start()
        return self.server.getsockname()[1]

    def _accept(self) -> None:
        while True:
            try:
                self.accepted.append(self.server.accept()[0])
            except OSError:
                return

    def __exit__(self, *exc) -> None:
        self.server.close()
        for conn in self.accepted:
            conn.close()


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _start(args: list[str], cwd: Path) -> subprocess.Popen:
    with open(cwd / "stdout.txt", "w") as out, open(cwd / "stderr.txt", "w") as err:
        return subprocess.Popen([sys.executable, str(ROOT / "pipeline.py"), *args], cwd=cwd, stdout=out, stderr=err)


def _error(cwd: Path) -> str:
    lines = (cwd / "stderr.txt").read_text(errors="replace").strip().splitlines()
    return next((line for line in reversed(lines) if line.startswith(("error:", "interrupted:"))), "")


def address_case(clip: Path, option: str, address: str, cwd: Path) -> dict:
    t0 = time.perf_counter()
    child = _start(["--video", str(clip), *FLAGS, option, address], cwd)
    try:
        code = child.wait(timeout=300)
    except subprocess.TimeoutExpired:
        kill([psutil.Process(child.pid), *_descendants(psutil.Process(child.pid))])
        code = None
    return {"exit_code": code, "to_exit_s": time.perf_counter() - t0, "line": _error(cwd)}


def fault_case(clip: Path, cwd: Path, fault: Callable[[psutil.Process], None]) -> dict:
    """Start a run, wait until Ray's agents run and a chunk is on disk, apply ``fault``."""
    child = _start(["--video", str(clip), *FLAGS], cwd)
    driver = psutil.Process(child.pid)
    deadline = time.monotonic() + 300
    while not (
        all(_find(driver, name) for name in ("raylet", "DashboardAgent", "RuntimeEnvAgent"))
        and list((cwd / "output" / ".work").glob("*/chunk-*.npz"))
    ):
        if child.poll() is not None or time.monotonic() > deadline:
            kill([driver, *_descendants(driver)])
            return {"exit_code": child.poll(), "error": "the run ended or stalled before the fault"}
        time.sleep(0.05)
    time.sleep(0.5)  # the watchdog records the descendants every 0.25 s
    family = _descendants(driver)
    t0 = time.perf_counter()
    fault(driver)
    code = child.wait(timeout=300)
    to_exit = time.perf_counter() - t0
    while _alive(family) and time.perf_counter() - t0 < 120:
        time.sleep(0.05)
    to_clean = time.perf_counter() - t0
    left = _alive(family)
    kill(left)
    return {
        "exit_code": code,
        "to_exit_s": to_exit,
        "to_no_process_left_s": to_clean,
        "left_after_120_s": len(left),
        "processes": len(family),
        "line": _error(cwd),
    }


def run_case(case: str, clip: Path, cwd: Path) -> dict:
    if case == "ray_unreachable":
        return address_case(clip, "--ray_address", f"127.0.0.1:{_closed_port()}", cwd)
    if case == "dask_unreachable":
        return address_case(clip, "--dask_address", f"tcp://127.0.0.1:{_closed_port()}", cwd)
    if case in ("ray_silent", "dask_silent"):
        with SilentPort() as port:
            if case == "ray_silent":
                return address_case(clip, "--ray_address", f"127.0.0.1:{port}", cwd)
            return address_case(clip, "--dask_address", f"tcp://127.0.0.1:{port}", cwd)
    if case == "driver_kill9":
        return fault_case(clip, cwd, lambda driver: driver.kill())
    if case == "sigterm":
        return fault_case(clip, cwd, lambda driver: driver.send_signal(signal.SIGTERM))
    if case == "raylet_kill":
        return fault_case(clip, cwd, lambda driver: _find(driver, "raylet").kill())
    raise ValueError(case)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--only", default=",".join(CASES))
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "faults.json")
    args = parser.parse_args()
    cases = [c for c in args.only.split(",") if c]
    unknown = set(cases) - set(CASES)
    if unknown:
        parser.error(f"unknown case(s): {', '.join(sorted(unknown))}")
    clip = make_clip(ROOT / "public" / "demo.mp4", 0.5).path
    results: dict[str, list[dict]] = {}
    for case in cases:
        for i in range(args.runs):
            with tempfile.TemporaryDirectory(prefix="faults-") as folder:
                run = run_case(case, clip, Path(folder))
            results.setdefault(case, []).append(run)
            print(f"{case} #{i + 1}: {json.dumps(run)}", flush=True)
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    print("\n| case | runs | exit codes | to exit, median (min-max) s | no process left, median s |")
    print("|---|---|---|---|---|")
    for case, runs in results.items():
        exits = [r["to_exit_s"] for r in runs if "to_exit_s" in r]
        cleans = [r["to_no_process_left_s"] for r in runs if "to_no_process_left_s" in r]
        codes = sorted({str(r["exit_code"]) for r in runs})
        span = f"{statistics.median(exits):.2f} ({min(exits):.2f}-{max(exits):.2f})" if exits else "-"
        clean = f"{statistics.median(cleans):.2f}" if cleans else "-"
        print(f"| {case} | {len(runs)} | {', '.join(codes)} | {span} | {clean} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
