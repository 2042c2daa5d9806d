"""Peak memory of the whole pipeline (driver, Dask and Ray processes) on a short and a long video:
it should not grow with the video's length.

    .venv/bin/python bench/memory.py [--minutes 1 15] [--memory_limit 0.4] [-- --no_video]

The videos are the sample clip repeated (stream copy, no re-encode) and cached under
bench/.cache/. Each length runs the real command line (``pipeline.py --video ...``) as a child
process, with a fresh output folder; a thread sums the RSS of the child and all its descendants
every 100 ms. Arguments after ``--`` (or in ``--extra "--workers 2"``) go to pipeline.py. Prints a
table and writes bench/memory.json. The headline is peak(longest) / peak(shortest), PASS at
<= 1.10; the exit status is 0 either way unless a run failed.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import platform
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import psutil

ROOT = Path(__file__).resolve().parents[1]
CACHE = Path(__file__).resolve().with_name(".cache")
MIB = 1024 * 1024
THRESHOLD = 1.10


@dataclass
class Clip:
    """A cached video of ``minutes`` made from the sample clip."""

    minutes: float
    path: Path
    frames: int
    fps: float
    size_bytes: int
    make_s: float | None  # None: taken from the cache
    method: str | None


def stream_info(path: Path) -> tuple[int, float, list[float]]:
    """OpenCV's frame count and fps, and every packet's timestamp (ms) read without decoding."""
    import cv2

    cap = cv2.VideoCapture(str(path), cv2.CAP_FFMPEG)
    if not cap.isOpened():
        raise RuntimeError(f"OpenCV cannot open {path}")
    frames, fps = int(cap.get(cv2.CAP_PROP_FRAME_COUNT)), cap.get(cv2.CAP_PROP_FPS)
    cap.set(cv2.CAP_PROP_FORMAT, -1)  # raw packets: timestamps without decoding 27000 VP9 frames
    stamps = []
    while cap.grab():
        stamps.append(cap.get(cv2.CAP_PROP_POS_MSEC))
    cap.release()
    return frames, fps, stamps


def check_clip(path: Path, frames: int, fps: float) -> str | None:
    """Why ``path`` is not one stream of ``frames`` frames at ``fps`` with monotonic timestamps, or None."""
    got_frames, got_fps, stamps = stream_info(path)
    if got_frames != frames or abs(got_fps - fps) > 0.01:
        return f"OpenCV reports {got_frames} frames at {got_fps:.3f} fps, expected {frames} at {fps:g}"
    if len(stamps) != frames:
        return f"{len(stamps)} packets read, expected {frames}"
    steps = [b - a for a, b in zip(stamps, stamps[1:])]
    period = 1000 / fps
    if min(steps) <= 0:
        return "timestamps are not monotonic"
    if max(steps) > 1.5 * period:  # a gap at a loop seam: would not play as one stream
        return f"timestamp gap of {max(steps):.1f} ms (frame period {period:.1f} ms)"
    return None


def make_clip(source: Path, minutes: float) -> Clip:
    """The sample clip repeated to ``minutes``, made once and cached under bench/.cache/."""
    import imageio_ffmpeg

    src_frames, fps, _ = stream_info(source)
    frames = round(minutes * 60 * fps)
    path = CACHE / f"{source.stem}-{minutes:g}min.mp4"
    if path.is_file() and check_clip(path, frames, fps) is None:
        return Clip(minutes, path, frames, fps, path.stat().st_size, None, None)

    CACHE.mkdir(parents=True, exist_ok=True)
    ffmpeg = imageio_ffmpeg.get_ffmpeg_exe()
    part = path.with_suffix(".part.mp4")
    loops = math.ceil(frames / src_frames)
    # Video stream only (the pipeline drops audio anyway): the sample's audio track is longer than
    # its video, and copying it leaves a gap in the video timestamps at every loop seam.
    base = [ffmpeg, "-hide_banner", "-loglevel", "error", "-y"]
    tail = ["-map", "0:v:0", "-c", "copy", "-frames:v", str(frames), str(part)]
    attempts = {"stream_loop": [*base, "-stream_loop", str(loops - 1), "-i", str(source), *tail]}
    listing = CACHE / f"{source.stem}-{minutes:g}min.txt"
    entry = f"file '{source.resolve().as_posix()}'\nduration {src_frames / fps:.6f}\n"
    attempts["concat"] = [*base, "-f", "concat", "-safe", "0", "-i", str(listing), *tail]

    problems = []
    for method, command in attempts.items():
        if method == "concat":
            listing.write_text(entry * loops)
        t0 = time.perf_counter()
        done = subprocess.run(command, capture_output=True, text=True)
        make_s = time.perf_counter() - t0
        listing.unlink(missing_ok=True)
        problem = done.stderr.strip()[-500:] if done.returncode else check_clip(part, frames, fps)
        if problem is None:
            part.replace(path)
            return Clip(minutes, path, frames, fps, path.stat().st_size, make_s, method)
        problems.append(f"{method}: {problem}")
    part.unlink(missing_ok=True)
    raise RuntimeError(f"cannot make a {minutes:g}-minute video: " + "; ".join(problems))


@dataclass
class Sampler:
    """Sums the RSS of a process and all its descendants every ``interval`` seconds, in a thread."""

    pid: int
    interval: float = 0.1
    peak: int = 0
    peak_at: float = 0.0
    peak_main: int = 0
    total: int = 0
    samples: int = 0
    most_processes: int = 0
    seen: dict[int, psutil.Process] = field(default_factory=dict)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def start(self) -> None:
        self._t0 = time.perf_counter()
        self._root = psutil.Process(self.pid)
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()

    def alive(self) -> list[psutil.Process]:
        """Descendants seen so far that still run (kept even once reparented away from the child)."""
        return [p for p in self.seen.values() if _running(p)]

    def _run(self) -> None:
        while not self._stop.is_set():
            self._sample()
            self._stop.wait(self.interval)

    def _sample(self) -> None:
        procs = [self._root]
        with contextlib.suppress(psutil.NoSuchProcess, psutil.AccessDenied):
            procs += self._root.children(recursive=True)
        for p in procs[1:]:
            self.seen.setdefault(p.pid, p)
        unique = {p.pid: p for p in [*procs, *self.seen.values()]}
        rss = main = count = 0
        for p in unique.values():
            try:
                value = p.memory_info().rss
            except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
                continue
            rss += value
            count += 1
            if p.pid == self.pid:
                main = value
        if count == 0:
            return
        self.samples += 1
        self.total += rss
        self.peak_main = max(self.peak_main, main)
        self.most_processes = max(self.most_processes, count)
        if rss > self.peak:
            self.peak, self.peak_at = rss, time.perf_counter() - self._t0


def stop(child: subprocess.Popen, sampler: Sampler) -> int:
    """Kill the child's process group (started by this script) and any descendant seen outside it."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(child.pid, signal.SIGKILL)
    kill(sampler.alive())
    return child.wait()


def kill(procs: list[psutil.Process]) -> None:
    """SIGKILL these processes (each one checked against pid reuse by psutil) and reap them."""
    for p in procs:
        with contextlib.suppress(psutil.NoSuchProcess, psutil.AccessDenied):
            p.kill()
    psutil.wait_procs(procs, timeout=5)


def _running(p: psutil.Process) -> bool:
    try:
        return p.is_running() and p.status() != psutil.STATUS_ZOMBIE
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return False


def run_pipeline(clip: Clip, args: argparse.Namespace, extra: list[str]) -> dict:
    """One run of pipeline.py on ``clip`` with the RSS sampler; its figures."""
    scratch = Path(tempfile.mkdtemp(prefix="bench-memory-"))
    command = [
        sys.executable,
        "pipeline.py",
        "--video",
        str(clip.path),
        "--output",
        str(scratch / "out"),
        "--models",
        str(scratch / "models"),
        "--quality",
        args.quality,
        "--memory_limit",
        str(args.memory_limit),
        "--quiet",
        *extra,
    ]
    stdout_path, stderr_path = scratch / "stdout.txt", scratch / "stderr.txt"
    with stdout_path.open("w") as out, stderr_path.open("w") as err:
        t0 = time.perf_counter()
        child = subprocess.Popen(command, cwd=ROOT, stdout=out, stderr=err, start_new_session=True)
        sampler = Sampler(child.pid, interval=args.interval)
        sampler.start()
        try:
            code = child.wait(timeout=args.timeout)
        except subprocess.TimeoutExpired:
            print(f"  stopping the {clip.minutes:g} min run after {args.timeout:g} s", file=sys.stderr)
            code = stop(child, sampler)
        except KeyboardInterrupt:
            stop(child, sampler)
            raise
        wall = time.perf_counter() - t0
        sampler.stop()

    # Processes of the run still alive after the driver exited (Ray or Dask not shut down) would
    # inflate the next run: give them a few seconds, then end them (by pid, all started by this run).
    leftovers = sampler.alive()
    _, still = psutil.wait_procs(leftovers, timeout=5)
    kill(still)

    stdout = stdout_path.read_text(errors="replace").strip().splitlines()
    stderr = stderr_path.read_text(errors="replace").strip().splitlines()
    if code != 0:
        print(f"  pipeline exited {code} on the {clip.minutes:g} min video; last stderr lines:", file=sys.stderr)
        for line in stderr[-args.stderr_lines :]:
            print(f"    {line}", file=sys.stderr)
    if not args.keep:
        shutil.rmtree(scratch, ignore_errors=True)
    return {
        "minutes": clip.minutes,
        "video": str(clip.path.relative_to(ROOT)),
        "frames": clip.frames,
        "command": shlex.join(command),
        "exit_code": code,
        "wall_s": round(wall, 2),
        "frames_per_s": round(clip.frames / wall, 2),
        "peak_rss_mib": round(sampler.peak / MIB, 1),
        "peak_at_s": round(sampler.peak_at, 1),
        "mean_rss_mib": round(sampler.total / max(sampler.samples, 1) / MIB, 1),
        "peak_driver_rss_mib": round(sampler.peak_main / MIB, 1),
        "most_processes": sampler.most_processes,
        "samples": sampler.samples,
        "leftover_processes_killed": len(still),
        "stdout_tail": stdout[-3:],
        "stderr_tail": stderr[-args.stderr_lines :] if code != 0 else [],
    }


def split_extra(argv: list[str]) -> tuple[list[str], list[str]]:
    """This script's arguments and the pipeline's (everything after ``--``)."""
    if "--" in argv:
        at = argv.index("--")
        return argv[:at], argv[at + 1 :]
    return argv, []


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=float, nargs="+", default=[1, 15], help="video lengths (default: 1 15)")
    parser.add_argument("--source", default="public/demo.mp4", help="clip repeated to make the videos")
    parser.add_argument("--memory_limit", type=float, default=0.4, help="pipeline's --memory_limit (default: 0.4)")
    parser.add_argument("--quality", default="fast", help="pipeline's --quality (default: fast)")
    parser.add_argument(
        "--extra", action="append", default=[], help='more pipeline arguments, e.g. --extra="--workers 2"'
    )
    parser.add_argument("--interval", type=float, default=0.1, help="RSS sampling period in s (default: 0.1)")
    parser.add_argument("--timeout", type=float, default=None, help="stop a run after this many s (default: none)")
    parser.add_argument("--stderr_lines", type=int, default=20, help="stderr lines shown for a failed run")
    parser.add_argument("--keep", action="store_true", help="keep each run's temporary output folder")
    parser.add_argument("--json", default=str(Path(__file__).with_name("memory.json")), help="where to write")
    sys.stdout.reconfigure(line_buffering=True)  # keep the order of our lines and the child's stderr tails
    ours, passthrough = split_extra(sys.argv[1:])
    args = parser.parse_args(ours)
    extra = [*(a for chunk in args.extra for a in shlex.split(chunk)), *passthrough]
    source = (ROOT / args.source).resolve()

    clips = []
    for minutes in sorted(set(args.minutes)):
        clip = make_clip(source, minutes)
        made = f"made in {clip.make_s:.1f} s ({clip.method})" if clip.make_s is not None else "cached"
        print(f"{clip.path.relative_to(ROOT)}: {clip.frames} frames, {clip.size_bytes / MIB:.1f} MiB, {made}")
        clips.append(clip)

    runs = []
    for clip in clips:
        print(f"running {clip.minutes:g} min ({clip.frames} frames) ...", flush=True)
        runs.append(run_pipeline(clip, args, extra))

    base = runs[0]["peak_rss_mib"] or float("nan")
    for run in runs:
        run["peak_ratio"] = round(run["peak_rss_mib"] / base, 3)
    base_name = f"peak/{runs[0]['minutes']:g}-min"
    print(f"{'length':>8} {'frames':>7} {'wall s':>8} {'frames/s':>9} {'peak RSS MiB':>13} {base_name:>12}")
    for run in runs:
        print(
            f"{run['minutes']:>6g} m {run['frames']:>7} {run['wall_s']:>8.1f} {run['frames_per_s']:>9.1f}"
            f" {run['peak_rss_mib']:>13.1f} {run['peak_ratio']:>12.3f}"
        )

    failed = [r for r in runs if r["exit_code"] != 0]
    ratio = runs[-1]["peak_ratio"] if len(runs) > 1 else None
    verdict = None
    if failed:
        names = ", ".join(f"{r['minutes']:g} min (exit {r['exit_code']})" for r in failed)
        print(f"FAILED runs: {names}")
    elif ratio is None:
        print("one length only: no ratio (run with two or more --minutes)")
    else:
        verdict = "PASS" if ratio <= THRESHOLD else "FAIL"
        print(f"{verdict}: peak({runs[-1]['minutes']:g} min) / peak({runs[0]['minutes']:g} min) = {ratio:.3f}")
        print(f"      (threshold {THRESHOLD:.2f})")

    results = {
        "machine": {
            "cpus": os.cpu_count(),
            "ram_mib": round(psutil.virtual_memory().total / MIB),
            "python": platform.python_version(),
            "platform": platform.platform(),
        },
        "settings": {
            "source": args.source,
            "minutes": [c.minutes for c in clips],
            "quality": args.quality,
            "memory_limit": args.memory_limit,
            "extra": extra,
            "interval_s": args.interval,
            "threshold": THRESHOLD,
        },
        "videos": [
            {
                "minutes": c.minutes,
                "path": str(c.path.relative_to(ROOT)),
                "frames": c.frames,
                "fps": c.fps,
                "size_mib": round(c.size_bytes / MIB, 1),
                "make_s": None if c.make_s is None else round(c.make_s, 2),
                "method": c.method,
            }
            for c in clips
        ],
        "runs": runs,
        "ratio": ratio,
        "verdict": verdict,
    }
    Path(args.json).write_text(json.dumps(results, indent=2) + "\n")
    print(f"wrote {args.json}")
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
