"""Shared parts of the benchmarks: cached long clips made from the sample clip, a command run as a
child process while a thread samples the RSS of its whole process tree, and stopping what a run
left behind (only processes this script started, by pid).
"""

from __future__ import annotations

import contextlib
import math
import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import psutil

ROOT = Path(__file__).resolve().parents[1]
CACHE = Path(__file__).resolve().with_name(".cache")
MIB = 1024 * 1024


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


def video_digest(path: Path) -> tuple[int, str]:
    """The number of video packets of ``path`` and a sha256 of their bytes, in order (timestamps left out)."""
    import hashlib

    import av

    digest = hashlib.sha256()
    count = 0
    with av.open(str(path)) as container:
        for packet in container.demux(container.streams.video[0]):
            if packet.size:
                digest.update(bytes(packet))
                count += 1
    return count, digest.hexdigest()


def check_vfr_clip(path: Path, cfr: Clip) -> str | None:
    """Why ``path`` is not ``cfr``'s frames at a variable frame rate (by the pipeline's probe), or None."""
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    from pipeline.errors import VideoError
    from pipeline.video.probe import probe_video

    try:
        info = probe_video(path)
    except VideoError as exc:
        return str(exc)
    if not info.variable_frame_rate:
        return "the probe finds a constant frame rate"
    if info.frame_count != cfr.frames:
        return f"{info.frame_count} frames, expected {cfr.frames} (the constant-rate clip's)"
    if video_digest(path) != video_digest(cfr.path):
        return f"its video packets differ from those of {cfr.path.name}"
    return None


def make_vfr_clip(source: Path, minutes: float) -> Clip:
    """The frames of ``make_clip(source, minutes)`` (the very same packets) at a variable frame rate,
    made once and cached under bench/.cache/.

    The concat demuxer joins the sample with its audio track, as a user joining clips would: the
    audio lasts 65 ms longer than the video, so at every join the video's timestamps jump by about
    three frame periods (99 ms instead of 33), and the probe reports ``variable_frame_rate``.
    ``fps`` is what OpenCV and so the probe report: the average rate (about 29.76 for 2 minutes).
    """
    import imageio_ffmpeg

    cfr = make_clip(source, minutes)
    src_frames = stream_info(source)[0]
    path = CACHE / f"{source.stem}-{minutes:g}min-vfr.mp4"
    if not (path.is_file() and check_vfr_clip(path, cfr) is None):
        CACHE.mkdir(parents=True, exist_ok=True)
        part = path.with_suffix(".part.mp4")
        listing = CACHE / f"{source.stem}-{minutes:g}min-vfr.txt"
        listing.write_text(f"file '{source.resolve().as_posix()}'\n" * math.ceil(cfr.frames / src_frames))
        command = [imageio_ffmpeg.get_ffmpeg_exe(), "-hide_banner", "-loglevel", "error", "-y"]
        command += ["-f", "concat", "-safe", "0", "-i", str(listing), "-map", "0:v:0", "-map", "0:a:0"]
        command += ["-c", "copy", "-frames:v", str(cfr.frames), "-shortest", str(part)]
        t0 = time.perf_counter()
        done = subprocess.run(command, capture_output=True, text=True)
        make_s = time.perf_counter() - t0
        listing.unlink(missing_ok=True)
        problem = done.stderr.strip()[-500:] if done.returncode else check_vfr_clip(part, cfr)
        if problem is not None:
            part.unlink(missing_ok=True)
            raise RuntimeError(f"cannot make a variable-frame-rate {minutes:g}-minute video: {problem}")
        part.replace(path)
        method = "concat with audio"
    else:
        make_s = method = None
    return Clip(minutes, path, cfr.frames, stream_info(path)[1], path.stat().st_size, make_s, method)


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


@dataclass
class ChildRun:
    """What one child process did: exit code, wall time and the RSS of its process tree."""

    command: list[str]
    exit_code: int
    spawn_epoch: float  # time.time() just before Popen
    wall_s: float  # from just before Popen to the child's exit
    timed_out: bool
    peak_rss_bytes: int
    peak_at_s: float
    mean_rss_bytes: float
    peak_main_rss_bytes: int
    most_processes: int
    leftovers_killed: int
    stdout: str
    stderr_tail: list[str]

    @property
    def ok(self) -> bool:
        return self.exit_code == 0 and not self.timed_out


def run_child(
    command: list[str],
    log_dir: Path,
    *,
    cwd: Path = ROOT,
    timeout: float | None = None,
    interval: float = 0.1,
    env: dict[str, str] | None = None,
    tail_lines: int = 30,
) -> ChildRun:
    """Run ``command`` in its own session with the RSS sampler; its stdout and stderr go to ``log_dir``.

    A run past ``timeout`` seconds is killed (its process group and every descendant seen). Processes
    of the run still alive after the child exited (an engine not shut down) get 5 s, then are killed,
    so that they do not weigh on the next measurement.
    """
    log_dir.mkdir(parents=True, exist_ok=True)
    stdout_path, stderr_path = log_dir / "stdout.txt", log_dir / "stderr.txt"
    timed_out = False
    with stdout_path.open("w") as out, stderr_path.open("w") as err:
        spawn_epoch = time.time()
        t0 = time.perf_counter()
        child = subprocess.Popen(command, cwd=cwd, env=env, stdout=out, stderr=err, start_new_session=True)
        sampler = Sampler(child.pid, interval=interval)
        sampler.start()
        try:
            code = child.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            timed_out = True
            code = stop(child, sampler)
        except KeyboardInterrupt:
            stop(child, sampler)
            raise
        wall = time.perf_counter() - t0
        sampler.stop()
    _, still = psutil.wait_procs(sampler.alive(), timeout=5)
    kill(still)
    stderr = stderr_path.read_text(errors="replace").strip().splitlines()
    return ChildRun(
        command=command,
        exit_code=code,
        spawn_epoch=spawn_epoch,
        wall_s=wall,
        timed_out=timed_out,
        peak_rss_bytes=sampler.peak,
        peak_at_s=sampler.peak_at,
        mean_rss_bytes=sampler.total / max(sampler.samples, 1),
        peak_main_rss_bytes=sampler.peak_main,
        most_processes=sampler.most_processes,
        leftovers_killed=len(still),
        stdout=stdout_path.read_text(errors="replace"),
        stderr_tail=stderr[-tail_lines:],
    )
