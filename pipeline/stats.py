"""RunStats: the timeline of a run, for ``--stats FILE`` and the benchmarks.

Times are wall-clock seconds since the epoch (``time.time()``), so marks taken
in the driver and on the workers of one machine line up. Each extraction task
reports when it started and finished on its worker; from those the steady
state is measured: the window in which every worker had started its first
chunk, the engines had finished starting (Ray starts while the first chunks
are tracked) and no worker had finished its last chunk, and the kept frames
tracked inside it.
"""

from __future__ import annotations

import os
import time
from dataclasses import asdict, dataclass


@dataclass(frozen=True)
class ChunkTiming:
    """One extraction task as its worker saw it."""

    video: str
    index: int
    frames: int  # kept frames (warm-up frames excluded)
    worker: str  # host:pid
    started: float
    finished: float
    dask_worker: str = ""  # the Dask worker's address (tcp://ip:port): which machine, where hosts share a name


def process_start_time() -> float:
    """When this process started, in epoch seconds.

    On Linux from ``/proc/self/stat`` (clock ticks since boot, 10 ms) and the
    boot clock read now; psutil's figure rests on a boot time rounded to the
    second. Elsewhere psutil's.
    """
    try:
        with open("/proc/self/stat", "rb") as fh:
            fields = fh.read().rsplit(b")", 1)[1].split()
        started_after_boot = int(fields[19]) / os.sysconf("SC_CLK_TCK")
        return time.time() - (time.clock_gettime(time.CLOCK_BOOTTIME) - started_after_boot)
    except (OSError, IndexError, ValueError, AttributeError):
        import psutil

        return psutil.Process(os.getpid()).create_time()


class RunStats:
    """Named marks (first time each happened) and chunk timings of one run."""

    def __init__(self) -> None:
        self.marks: dict[str, float] = {}
        self.chunks: list[ChunkTiming] = []
        self.videos: dict[str, dict[str, float]] = {}

    def mark(self, name: str, at: float | None = None) -> None:
        """Record ``name`` the first time it happens."""
        self.marks.setdefault(name, time.time() if at is None else at)

    def video_mark(self, video: str, name: str) -> None:
        self.videos.setdefault(video, {}).setdefault(name, time.time())

    def chunk(self, timing: ChunkTiming) -> None:
        self.chunks.append(timing)

    def to_dict(self) -> dict:
        origin = self.marks.get("process_start", min(self.marks.values(), default=0.0))
        return {
            "origin": origin,
            "marks_s": {k: round(v - origin, 3) for k, v in sorted(self.marks.items(), key=lambda kv: kv[1])},
            "derived": self.derived(),
            "videos_s": {v: {k: round(t - origin, 3) for k, t in m.items()} for v, m in self.videos.items()},
            "phases_s": self.phases(),
            "chunks": [
                asdict(c) | {"started": round(c.started - origin, 3), "finished": round(c.finished - origin, 3)}
                for c in sorted(self.chunks, key=lambda c: c.started)
            ],  # fmt: skip
        }

    def derived(self) -> dict:
        marks = self.marks
        out: dict[str, float | int | None] = {}
        origin = marks.get("process_start")
        if origin is not None and "first_chunk_submitted" in marks:
            out["startup_s"] = round(marks["first_chunk_submitted"] - origin, 3)
        for name in ("dask", "ray"):
            if f"{name}_start" in marks and f"{name}_ready" in marks:
                out[f"{name}_start_s"] = round(marks[f"{name}_ready"] - marks[f"{name}_start"], 3)
        if self.chunks:
            extracted = sum(c.frames for c in self.chunks)
            first = min(c.started for c in self.chunks)
            last = max(c.finished for c in self.chunks)
            out["extract_frames"] = extracted
            out["extract_fps"] = round(extracted / (last - first), 2) if last > first else None
            out.update(steady_state(self.chunks, ready=marks.get("ray_ready")))
        return out

    def phases(self) -> dict:
        """Where the time went, seconds: the run's start and stop, and per video its extraction
        (planned to the track complete), analysis, and each output (from the analysis' end to
        that output written; they run side by side)."""
        marks = self.marks

        def span(a: dict, start: str, end: str) -> float | None:
            return round(a[end] - a[start], 3) if start in a and end in a else None

        run = {
            "start_to_first_chunk": span(marks, "process_start", "first_chunk_submitted"),
            "engines_stop": span(marks, "engines_stop", "engines_stopped"),
        }
        videos = {}
        for video, m in self.videos.items():
            phases = {
                "extract": span(m, "planned", "analyze"),
                "analysis": span(m, "analyze", "render"),
                "outputs": span(m, "render", "done"),
            }
            phases |= {k.removesuffix("_written"): span(m, "render", k) for k in m if k.endswith("_written")}
            if "analysis_on_dask" in m:
                phases["analysis_on"] = "dask"  # Ray had not started when the track was complete
            videos[video] = phases
        return {"run": run, "videos": videos}


def steady_state(chunks: list[ChunkTiming], ready: float | None = None) -> dict:
    """Frames/s while every worker was busy with the run and the engines had started.

    The window opens when the last worker starts its first chunk, or at
    ``ready`` (when the last engine finished starting) if that is later, and
    closes when the first worker finishes its last chunk. A chunk that overlaps the
    window counts in proportion to the overlap (its frames spread evenly over
    its time). Gaps between the tasks of a worker stay inside the window: the
    figure includes the scheduling overhead.
    """
    by_worker: dict[str, list[ChunkTiming]] = {}
    for c in chunks:
        by_worker.setdefault(c.worker, []).append(c)
    opens = max(min(c.started for c in cs) for cs in by_worker.values())
    if ready is not None:
        opens = max(opens, ready)
    closes = min(max(c.finished for c in cs) for cs in by_worker.values())
    if closes <= opens:
        return {"steady_fps": None, "steady_window_s": 0.0, "steady_workers": len(by_worker)}
    frames = 0.0
    for c in chunks:
        overlap = min(c.finished, closes) - max(c.started, opens)
        if overlap > 0 and c.finished > c.started:
            frames += c.frames * overlap / (c.finished - c.started)
    return {
        "steady_fps": round(frames / (closes - opens), 2),
        "steady_window_s": round(closes - opens, 3),
        "steady_workers": len(by_worker),
    }
