"""The job service against the command line, measured in one run on the sample clip.

    .venv/bin/python bench/service.py [--out bench/service.json]

1. ``pipeline.py --video demo.mp4`` (what a user runs today: engines started for the run);
2. ``pipeline.py serve``: the time until its engines are ready, then the sample uploaded
   and followed to ``completed`` (engines already up: what a coach waits for after the drop);
3. twenty uploads at once of a 45-frame clip of the sample (640x360): the time until all
   are complete, and the memory monitor's peak against the budget.

Both use the same settings (``--quality fast``, every output, LLM examples on, 2 workers,
``--memory_limit 0.2``). Prints a table and writes JSON; docs/benchmarks.md quotes it.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "public" / "demo.mp4"
COMMON = ["--quality", "fast", "--workers", "2", "--memory_limit", "0.2"]
sys.path.insert(0, str(ROOT / "tests"))


def cli_seconds(folder: Path) -> float:
    args = [sys.executable, str(ROOT / "pipeline.py"), "--video", str(SAMPLE), *COMMON, "--quiet"]
    args += ["-o", str(folder / "output"), "-m", str(folder / "models"), "-l", str(folder / "llm")]
    started = time.perf_counter()
    subprocess.run(args, check=True, cwd=folder)
    return time.perf_counter() - started


def wait_done(url: str, job_id: str, timeout: float = 900) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job = requests.get(f"{url}/api/jobs/{job_id}", timeout=30).json()
        if job["status"] in ("completed", "failed", "cancelled"):
            return job
        time.sleep(0.1)
    raise SystemExit(f"job {job_id} did not finish in {timeout} s")


def upload(url: str, path: Path, name: str) -> str:
    files = [("files", (name, path.read_bytes(), "video/mp4"))]
    response = requests.post(f"{url}/api/jobs", files=files, timeout=120)
    response.raise_for_status()
    return response.json()["id"]


def service_figures(folder: Path, short: Path) -> dict:
    from serve.harness import Service

    service = Service(folder / "data", *COMMON)
    started = time.perf_counter()
    service.start()
    ready_s = time.perf_counter() - started
    url = service.url
    try:
        time.sleep(5)  # the embedded Ray finishes starting in the background
        t0 = time.perf_counter()
        job = wait_done(url, upload(url, SAMPLE, "demo.mp4"))
        sample_s = time.perf_counter() - t0
        assert job["status"] == "completed", job
        t0 = time.perf_counter()
        with ThreadPoolExecutor(20) as pool:
            ids = list(pool.map(lambda i: upload(url, short, f"clip-{i:02d}.mp4"), range(20)))
        jobs = [wait_done(url, i) for i in ids]
        twenty_s = time.perf_counter() - t0
        assert all(j["status"] == "completed" for j in jobs), [j["error"] for j in jobs]
        memory = requests.get(f"{url}/api/health", timeout=30).json()["memory"]
    finally:
        service.stop()
    return {
        "service_ready_s": round(ready_s, 2),
        "service_sample_job_s": round(sample_s, 2),
        "service_twenty_clips_s": round(twenty_s, 2),
        "twenty_clips_frames": 20 * 45,
        "memory_peak_mib": round(memory["peak_bytes"] / 2**20),
        "memory_budget_mib": round(memory["budget_bytes"] / 2**20),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=str(ROOT / "bench" / "service.json"))
    args = parser.parse_args()
    from media import _small_clip

    with tempfile.TemporaryDirectory(prefix="bench-service-") as tmp:
        folder = Path(tmp)
        short = _small_clip(SAMPLE, folder / "short.mp4", 60, 45)
        figures = {"cli_sample_s": round(cli_seconds(folder), 2)} | service_figures(folder, short)
    figures["settings"] = " ".join(COMMON)
    Path(args.out).write_text(json.dumps(figures, indent=2) + "\n")
    for key, value in figures.items():
        print(f"{key:28s} {value}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
