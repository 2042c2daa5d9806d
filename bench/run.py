"""The benchmark suite: the pipeline against its ceiling (plain MediaPipe loops on every core), its
start-up, long videos, many short videos, several people, a variable-frame-rate video, and a peer
tool (kinemotion). One measurement at a time, each in fresh child processes.

    .venv/bin/python bench/run.py [--only SECTION,...] [--quick] [--skip_peer] [--out DIR]
                                  [--source public/demo.mp4] [--ceiling_passes N] [--timeout S] [--keep]

Sections, in this order:

  ceiling   bench/ceiling.py: os.cpu_count() plain MediaPipe loops at once over the sample clip with
            the fast preset (lite model), 4 passes (quick: 1). Aggregate frames/s.
  pipeline  pipeline.py --quality fast on the 2-minute clip (quick: 1 minute), --no_video, then with
            the annotated video. Wall time (Popen to exit), frames/s, steady-state frames/s (--stats),
            both as a share of the ceiling; start-up (spawn to the first chunk submitted, Dask's and
            Ray's start, whether Ray was ready before the last chunk finished); peak RSS.
  long      the 15-minute clip (quick: 3) with --no_video at full rate and with --sample_fps 10, and
            the 1-minute clip at full rate: wall time against the ceiling's time for the same frames,
            peak RSS(long) / peak RSS(1 minute).
  batch     20 copies of the sample (quick: 4) in bench/.cache/batch/: one run over the folder versus
            one run per clip.
  persons   --num_poses auto (the default) against --num_poses 1, --no_video, on the sample clip
            and the 2-minute clip: frames/s, persons found, and the share of work the chunk
            handover adds (frames tracked past a chunk's end, each by two trackers, over the
            clip's frames).
  vfr       the 2-minute clip (quick: 1 minute) and the same frames at a variable frame rate (the
            sample joined with its audio by the concat demuxer: a 99 ms step at every join),
            --no_video, one after the other: wall time of each, chunks, and the ratio vfr / cfr.
  peer      kinemotion 0.82.0 (installed into bench/.cache/kinemotion-venv when missing)
            `dropjump-analyze --quality fast` versus `pipeline.py --quality fast` (all outputs) on the
            sample clip and the 2-minute clip (quick: the sample only). Speedup = kinemotion / pipeline.

Options:

  --only a,b        run only these sections (in the order above); ratios to the ceiling are null
                    unless the ceiling ran in the same invocation
  --quick           small sizes, to check that the suite works; the targets are still evaluated but
                    the results say "quick": true (the targets are defined for the full sizes)
  --skip_peer       leave out the peer section (and its kinemotion install)
  --out DIR         write results.json, results.md and benchmarks.md into DIR instead of
                    bench/results.json, bench/results.md and docs/benchmarks.md
  --source FILE     the sample clip the test videos are made from (default: public/demo.mp4)
  --ceiling_passes  passes of the ceiling loops over the clip (default: 4, quick: 1)
  --timeout S       stop a run after S seconds; it counts as failed (default: 3600, quick: 600)
  --keep            keep each run's temporary folders (printed at the end)

Every pipeline run gets fresh temporary --output, --models and --llm_data folders and a --stats
file; the recorded command shows them as OUT/, MODELS/, LLM/ and STATS.json. The longer clips are
the sample repeated by stream copy, cached in bench/.cache/.

Writes bench/results.json (machine, settings, every run: command, exit code, wall time, frames/s,
peak RSS of the whole process tree, the --stats derived figures and marks, and the TARGETS
evaluated), bench/results.md (tables) and, in docs/benchmarks.md, the parts between the
<!-- machine:start/end --> and <!-- results:start/end --> markers (the file is created when
missing; the rest of it is left as it is). Exit status: 1 if a run failed, else 0; a missed target
is not a failure.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import json
import os
import platform
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path

import psutil
from common import CACHE, MIB, ROOT, ChildRun, Clip, make_clip, make_vfr_clip, run_child, stream_info

SECTIONS = ("ceiling", "pipeline", "long", "batch", "persons", "vfr", "peer")
FAST = ["--quality", "fast"]
# The pipeline runs track one person, like the ceiling's plain loops: the ratios compare the same
# work. The persons section measures the default, --num_poses auto, against it.
ONE = [*FAST, "--num_poses", "1"]
NO_VIDEO = [*ONE, "--no_video"]
KINEMOTION = "kinemotion==0.82.0"
KINEMOTION_VENV = CACHE / "kinemotion-venv"
BATCH_DIR = CACHE / "batch"
GIB = 1024 * MIB
MARKERS = {
    "machine": ("<!-- machine:start -->", "<!-- machine:end -->"),
    "results": ("<!-- results:start -->", "<!-- results:end -->"),
}
PACKAGES = {  # what the Machine section lists: name -> the distributions that may provide it
    "mediapipe": ("mediapipe",),
    "ray": ("ray",),
    "dask": ("dask",),
    "distributed": ("distributed",),
    "opencv": ("opencv-python", "opencv-python-headless", "opencv-contrib-python", "opencv-contrib-python-headless"),
    "av": ("av",),
    "numpy": ("numpy",),
}


@dataclass(frozen=True)
class Sizes:
    ceiling_passes: int
    pipeline_minutes: float
    long_minutes: float
    short_minutes: float
    batch_clips: int
    peer_minutes: tuple[float, ...]  # 0: the sample clip itself


FULL = Sizes(
    ceiling_passes=4, pipeline_minutes=2, long_minutes=15, short_minutes=1, batch_clips=20, peer_minutes=(0, 2)
)
QUICK = Sizes(ceiling_passes=1, pipeline_minutes=1, long_minutes=3, short_minutes=1, batch_clips=4, peer_minutes=(0,))


@dataclass(frozen=True)
class Target:
    """A goal on one measured value of the results (``where``: keys into the sections' data)."""

    name: str
    measure: str
    where: tuple[str, ...]
    op: str  # ">=" or "<="
    target: float
    unit: str
    runs: tuple[tuple[str, ...], ...]  # where the runs it is measured on are, for their commands


TARGETS = (
    Target(
        "efficiency_steady",
        "steady-state frames/s / ceiling (no video, 2-min clip)",
        ("pipeline", "runs", "no_video", "efficiency_steady"),
        ">=",
        0.95,
        "ratio",
        (("pipeline", "runs", "no_video"),),
    ),
    Target(
        "efficiency_whole",
        "whole-run frames/s / ceiling (no video, 2-min clip)",
        ("pipeline", "runs", "no_video", "efficiency_whole"),
        ">=",
        0.90,
        "ratio",
        (("pipeline", "runs", "no_video"),),
    ),
    Target(
        "efficiency_whole_video",
        "whole-run frames/s / ceiling (annotated video and report, 2-min clip)",
        ("pipeline", "runs", "video", "efficiency_whole"),
        ">=",
        0.60,
        "ratio",
        (("pipeline", "runs", "video"),),
    ),
    Target(
        "startup_s",
        "start-up: spawn to the first chunk submitted",
        ("pipeline", "startup", "startup_s"),
        "<=",
        3.0,
        "s",
        (("pipeline", "runs", "no_video"),),
    ),
    Target(
        "long_sample_fps_10_wall_s",
        "15-min clip, --sample_fps 10: wall time",
        ("long", "runs", "sample_10", "wall_s"),
        "<=",
        150.0,
        "s",
        (("long", "runs", "sample_10"),),
    ),
    Target(
        "long_full_rate_vs_ceiling",
        "15-min clip at full rate: wall / ceiling's time for its frames",
        ("long", "full_rate_vs_ceiling"),
        "<=",
        1.15,
        "ratio",
        (("long", "runs", "full_rate"),),
    ),
    Target(
        "memory_ratio",
        "peak RSS: 15-min clip / 1-min clip",
        ("long", "memory_ratio"),
        "<=",
        1.10,
        "ratio",
        (("long", "runs", "full_rate"), ("long", "runs", "short")),
    ),
    Target(
        "vfr_vs_cfr",
        "variable-frame-rate 2-min clip / same content at constant rate, no video (wall)",
        ("vfr", "vfr_vs_cfr"),
        "<=",
        1.15,
        "ratio",
        (("vfr", "runs", "cfr"), ("vfr", "runs", "vfr")),
    ),
    Target(
        "peer_speedup_2min",
        "kinemotion wall / pipeline wall (2-min clip)",
        ("peer", "clips", "2min", "speedup"),
        ">=",
        1.5,
        "x",
        (("peer", "clips", "2min", "pipeline"), ("peer", "clips", "2min", "kinemotion")),
    ),
    Target(
        "peer_speedup_8s",
        "kinemotion wall / pipeline wall (8-s sample clip)",
        ("peer", "clips", "sample", "speedup"),
        ">=",
        1.0,
        "x",
        (("peer", "clips", "sample", "pipeline"), ("peer", "clips", "sample", "kinemotion")),
    ),
)


@dataclass
class Suite:
    """One invocation: settings, the ceiling once measured, the runs that failed, progress lines."""

    source: Path
    source_frames: int
    sizes: Sizes
    scratch: Path
    timeout: float | None
    keep: bool
    t0: float = field(default_factory=time.perf_counter)
    ceiling_fps: float | None = None
    failures: list[str] = field(default_factory=list)

    def say(self, text: str) -> None:
        elapsed = time.perf_counter() - self.t0
        print(f"[{int(elapsed // 60):02d}:{elapsed % 60:04.1f}] {text}", flush=True)

    def workdir(self, label: str) -> Path:
        return Path(tempfile.mkdtemp(prefix=f"{label}-", dir=self.scratch))

    def cleanup(self, workdir: Path) -> None:
        if not self.keep:
            shutil.rmtree(workdir, ignore_errors=True)

    def finish(self, label: str, run: ChildRun, record: dict) -> None:
        """Progress line of a run; a failed one is remembered and its last stderr lines shown."""
        fps = record.get("fps_whole")
        steady = record.get("steady_fps")
        self.say(
            f"{label}: exit {run.exit_code}{' (timed out)' if run.timed_out else ''}, {run.wall_s:.1f} s"
            + (f", {fps:.1f} frames/s" if fps else "")
            + (f", steady {steady:.1f} frames/s" if steady else "")
            + (f", aggregate {record['fps']:.1f} frames/s" if record.get("fps") else "")
            + f", peak {run.peak_rss_bytes / MIB:.0f} MiB"
        )
        if not run.ok:
            self.failures.append(label)
            for line in run.stderr_tail[-10:]:
                print(f"    {line}", flush=True)


# --- helpers ---------------------------------------------------------------------------------------


def rel(path: Path | str) -> str:
    """``path`` relative to the repository when it is inside it (the runs' working directory)."""
    path = Path(path)
    if path.is_absolute():
        try:
            return str(path.relative_to(ROOT))
        except ValueError:
            return str(path)
    return str(path)


def shown(command: list[str], placeholders: dict[Path, str]) -> str:
    """``command`` as a copy-pastable line, the temporary paths shown as their placeholders."""

    def one(arg: str) -> str:
        for path, name in placeholders.items():
            if arg == str(path):
                return name + ("/" if "." not in name else "")
            if arg.startswith(str(path) + os.sep):
                return name + "/" + arg[len(str(path)) + 1 :]
        return rel(arg) if os.sep in arg else arg

    return shlex.join(one(arg) for arg in command)


def ratio(a: float | None, b: float | None, digits: int = 3) -> float | None:
    return None if a is None or not b else round(a / b, digits)


def ok(record: dict | None) -> bool:
    return bool(record) and record.get("exit_code") == 0 and not record.get("timed_out")


def ok_value(record: dict | None, key: str) -> float | None:
    """``record[key]`` of a run that succeeded, else None."""
    return record.get(key) if ok(record) else None


def dig(data: object, path: tuple[str, ...]) -> object:
    for key in path:
        if not isinstance(data, dict) or key not in data:
            return None
        data = data[key]
    return data


def base_record(run: ChildRun, command: str, frames: int | None) -> dict:
    """What every run records: command, exit code, wall time, frames/s and the process tree's RSS."""
    record = {
        "command": command,
        "exit_code": run.exit_code,
        "timed_out": run.timed_out,
        "wall_s": round(run.wall_s, 2),
        "frames": frames,
        "fps_whole": round(frames / run.wall_s, 2) if frames and run.ok else None,
        "peak_rss_mib": round(run.peak_rss_bytes / MIB, 1),
        "peak_at_s": round(run.peak_at_s, 1),
        "mean_rss_mib": round(run.mean_rss_bytes / MIB, 1),
        "most_processes": run.most_processes,
        "leftover_processes_killed": run.leftovers_killed,
    }
    if not run.ok:
        record["stderr_tail"] = run.stderr_tail
    return record


def file_bytes(path: str | None) -> int | None:
    if not path:
        return None
    file = Path(path) if Path(path).is_absolute() else ROOT / path
    return file.stat().st_size if file.is_file() else None


def read_stats(path: Path, spawn_epoch: float) -> dict:
    """The --stats figures of a run: derived block, marks, chunk summary, times since the bench's spawn."""
    try:
        stats = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        return {"stats_error": str(exc)}
    marks = stats.get("marks_s", {})
    chunks = stats.get("chunks", [])
    offset = stats["origin"] - spawn_epoch
    since_spawn = {name: round(offset + t, 3) for name, t in marks.items()}
    if chunks:
        since_spawn["first_chunk_started"] = round(offset + min(c["started"] for c in chunks), 3)
        since_spawn["last_chunk_finished"] = round(offset + max(c["finished"] for c in chunks), 3)
    videos = [
        {
            "name": v.get("name"),
            "success": v.get("success"),
            "frames": v.get("frames"),
            "frames_analysed": v.get("frames_analysed"),
            "persons": v.get("persons"),
            "handover": (v.get("summary") or {}).get("chunks"),
            "annotated_video_bytes": file_bytes(v.get("outputs", {}).get("annotated_video")),
        }
        for v in stats.get("videos", [])
    ]
    return {
        "derived": stats.get("derived", {}),
        "marks_s": marks,
        "phases_s": stats.get("phases_s", {}),
        "since_spawn_s": since_spawn,
        "chunks": {"count": len(chunks), "workers": len({c["worker"] for c in chunks})},
        "videos": videos,
    }


def video_ok(record: dict) -> bool:
    """Every video of a pipeline run has a non-empty annotated video."""
    videos = record.get("videos") or []
    return ok(record) and bool(videos) and all((v["annotated_video_bytes"] or 0) > 0 for v in videos)


def pipeline_run(suite: Suite, label: str, inputs: list[str], flags: list[str], frames: int) -> dict:
    """One ``pipeline.py`` run with fresh output folders and --stats, sampled; its record."""
    work = suite.workdir(label)
    out, models, llm, stats = work / "out", work / "models", work / "llm", work / "stats.json"
    placeholders = {out: "OUT", models: "MODELS", llm: "LLM", stats: "STATS.json"}
    command = [sys.executable, "pipeline.py", *inputs, *flags]
    command += ["--output", str(out), "--models", str(models), "--llm_data", str(llm), "--stats", str(stats), "--quiet"]
    text = shown(command, placeholders)
    suite.say(f"{label}: {text}")
    run = run_child(command, work, timeout=suite.timeout)
    record = {"label": label, **base_record(run, text, frames), **read_stats(stats, run.spawn_epoch)}
    record["steady_fps"] = dig(record, ("derived", "steady_fps"))
    suite.finish(label, run, record)
    suite.cleanup(work)
    return record


def clip_of(suite: Suite, minutes: float) -> Clip:
    clip = make_clip(suite.source, minutes)
    made = f"made in {clip.make_s:.1f} s ({clip.method})" if clip.make_s is not None else "cached"
    suite.say(f"{rel(clip.path)}: {clip.frames} frames, {clip.size_bytes / MIB:.1f} MiB, {made}")
    return clip


def clip_facts(clip: Clip) -> dict:
    return {"path": rel(clip.path), "minutes": clip.minutes, "frames": clip.frames, "fps": clip.fps}


# --- sections --------------------------------------------------------------------------------------


def last_json(stdout: str) -> dict | None:
    """The JSON object printed last (indented, opening on a line of its own), or None."""
    lines = stdout.splitlines()
    starts = [i for i, line in enumerate(lines) if line == "{"]
    if not starts:
        return None
    try:
        return json.loads("\n".join(lines[starts[-1] :]))
    except ValueError:
        return None


def section_ceiling(suite: Suite) -> dict:
    """N plain MediaPipe loops at once (bench/ceiling.py in a child process); aggregate frames/s."""
    loops = os.cpu_count() or 1
    command = [sys.executable, "bench/ceiling.py", "--video", rel(suite.source), *FAST]
    command += ["--loops", str(loops), "--passes", str(suite.sizes.ceiling_passes)]
    text = shown(command, {})
    suite.say(f"ceiling: {text}")
    work = suite.workdir("ceiling")
    run = run_child(command, work, timeout=suite.timeout)
    record = base_record(run, text, None)
    data = last_json(run.stdout) if run.ok else None
    if run.ok and data is None:
        run.exit_code = 1
        record.update(exit_code=1, stderr_tail=["no JSON result on stdout", *run.stdout.splitlines()[-10:]])
    if data is not None:
        record.update({k: data[k] for k in ("loops", "passes", "frames", "fps", "fps_per_loop", "detected_share")})
        record["loops_wall_s"] = data["wall_s"]
        suite.ceiling_fps = data["fps"]
    suite.finish("ceiling", run, record)
    suite.cleanup(work)
    return record


def add_efficiency(record: dict, ceiling_fps: float | None) -> None:
    record["efficiency_whole"] = ratio(ok_value(record, "fps_whole"), ceiling_fps)
    record["efficiency_steady"] = ratio(ok_value(record, "steady_fps"), ceiling_fps)


def startup_facts(record: dict) -> dict:
    """Start-up of a run, in seconds since the bench spawned it (and the stats' own figures)."""
    derived = record.get("derived") or {}
    since = record.get("since_spawn_s") or {}
    startup = since.get("first_chunk_submitted")
    dask = derived.get("dask_start_s")
    ray_ready, last = since.get("ray_ready"), since.get("last_chunk_finished")
    return {
        "startup_s": startup,
        "stats_startup_s": derived.get("startup_s"),
        "process_start_s": since.get("process_start"),
        "first_chunk_started_s": since.get("first_chunk_started"),
        "dask_start_s": dask,
        "dask_share": ratio(dask, startup),
        "ray_start_s": derived.get("ray_start_s"),
        "ray_ready_s": ray_ready,
        "last_chunk_finished_s": last,
        "ray_overlapped": None if ray_ready is None or last is None else ray_ready <= last,
    }


def section_pipeline(suite: Suite) -> dict:
    """The 2-minute clip without and with the annotated video: frames/s against the ceiling, start-up."""
    clip = clip_of(suite, suite.sizes.pipeline_minutes)
    inputs = ["--video", rel(clip.path)]
    runs = {
        "no_video": pipeline_run(suite, "pipeline.no_video", inputs, NO_VIDEO, clip.frames),
        "video": pipeline_run(suite, "pipeline.video", inputs, ONE, clip.frames),
    }
    for record in runs.values():
        add_efficiency(record, suite.ceiling_fps)
    startup = startup_facts(runs["no_video"]) if ok(runs["no_video"]) else {}
    return {"clip": clip_facts(clip), "ceiling_fps": suite.ceiling_fps, "runs": runs, "startup": startup}


def section_long(suite: Suite) -> dict:
    """A long clip at full rate and at 10 frames/s, and a 1-minute clip: time and memory."""
    long_clip = clip_of(suite, suite.sizes.long_minutes)
    short = clip_of(suite, suite.sizes.short_minutes)
    long_inputs = ["--video", rel(long_clip.path)]
    runs = {
        "full_rate": pipeline_run(suite, "long.full_rate", long_inputs, NO_VIDEO, long_clip.frames),
        "sample_10": pipeline_run(
            suite, "long.sample_10", long_inputs, [*NO_VIDEO, "--sample_fps", "10"], long_clip.frames
        ),
        "short": pipeline_run(suite, "long.short", ["--video", rel(short.path)], NO_VIDEO, short.frames),
    }
    ceiling_time = round(long_clip.frames / suite.ceiling_fps, 2) if suite.ceiling_fps else None
    return {
        "clips": {"long": clip_facts(long_clip), "short": clip_facts(short)},
        "ceiling_fps": suite.ceiling_fps,
        "runs": runs,
        "ceiling_time_s": ceiling_time,
        "full_rate_vs_ceiling": ratio(ok_value(runs["full_rate"], "wall_s"), ceiling_time),
        "memory_ratio": ratio(ok_value(runs["full_rate"], "peak_rss_mib"), ok_value(runs["short"], "peak_rss_mib")),
    }


def section_persons(suite: Suite) -> dict:
    """--num_poses auto against 1, no video, on the sample and the 2-minute clip: frames/s and the
    work the chunk handover adds."""
    clip = clip_of(suite, suite.sizes.pipeline_minutes)
    clips = {"sample": (suite.source, suite.source_frames), "2min": (clip.path, clip.frames)}
    flags = ["--quality", "fast", "--no_video"]
    out = {}
    for name, (path, frames) in clips.items():
        runs = {
            poses: pipeline_run(suite, f"persons.{name}.{poses}", ["--video", rel(path)], [*flags, "--num_poses", poses], frames)
            for poses in ("1", "auto")
        }  # fmt: skip
        row = {
            "runs": runs,
            "fps_auto_vs_1": ratio(ok_value(runs["auto"], "fps_whole"), ok_value(runs["1"], "fps_whole")),
        }
        for poses, record in runs.items():
            video = (record.get("videos") or [{}])[0]
            handover = video.get("handover") or {}
            overlap = handover.get("overlap_frames")
            row[poses] = {
                "persons": video.get("persons"),
                "chunks": handover.get("chunks"),
                "overlap_frames": overlap,
                # each frame of a tail is tracked by the chunk's tracker and by the shadow of the next one
                "overlap_work_share": ratio(2 * overlap, frames) if overlap is not None else None,
            }
        out[name] = row
    return out


def section_vfr(suite: Suite) -> dict:
    """The 2-minute clip at its constant rate, then the same frames at a variable rate, --no_video:
    wall time of each, and vfr / cfr (chunked alike, the two runs do the same work)."""
    cfr = clip_of(suite, suite.sizes.pipeline_minutes)
    vfr = make_vfr_clip(suite.source, suite.sizes.pipeline_minutes)
    made = f"made in {vfr.make_s:.1f} s ({vfr.method})" if vfr.make_s is not None else "cached"
    suite.say(f"{rel(vfr.path)}: {vfr.frames} frames, variable rate ({vfr.fps:.3f} fps on average), {made}")
    clips = {"cfr": cfr, "vfr": vfr}
    runs = {
        name: pipeline_run(suite, f"vfr.{name}", ["--video", rel(clip.path)], NO_VIDEO, clip.frames)
        for name, clip in clips.items()
    }
    return {
        "clips": {name: clip_facts(clip) | {"variable_frame_rate": name == "vfr"} for name, clip in clips.items()},
        "runs": runs,
        "chunks": {name: dig(record, ("chunks", "count")) for name, record in runs.items()},
        "vfr_vs_cfr": ratio(ok_value(runs["vfr"], "wall_s"), ok_value(runs["cfr"], "wall_s")),
    }


def batch_clips(source: Path, count: int) -> list[Path]:
    """``count`` copies of ``source`` (clip-01.mp4 ...) in bench/.cache/batch/, nothing else there."""
    BATCH_DIR.mkdir(parents=True, exist_ok=True)
    wanted = [BATCH_DIR / f"clip-{i:02d}.mp4" for i in range(1, count + 1)]
    for path in BATCH_DIR.iterdir():
        if path not in wanted and path.is_file():
            path.unlink()
    size = source.stat().st_size
    for path in wanted:
        if not path.is_file() or path.stat().st_size != size:
            shutil.copyfile(source, path)
    return wanted


def section_batch(suite: Suite) -> dict:
    """Many short clips: one run over the folder versus one run per clip."""
    clips = batch_clips(suite.source, suite.sizes.batch_clips)
    frames = suite.source_frames
    one = pipeline_run(suite, "batch.one_run", ["--input", rel(BATCH_DIR)], NO_VIDEO, frames * len(clips))
    separate = [pipeline_run(suite, f"batch.{p.stem}", ["--video", rel(p)], NO_VIDEO, frames) for p in clips]
    separate_ok = all(ok(r) for r in separate)
    separate_wall = round(sum(r["wall_s"] for r in separate), 2) if separate_ok else None
    one_wall = ok_value(one, "wall_s")
    total_frames = frames * len(clips)
    return {
        "folder": rel(BATCH_DIR),
        "clips": len(clips),
        "frames_per_clip": frames,
        "one_run": one,
        "separate_runs": separate,
        "one_run_wall_s": one_wall,
        "separate_wall_s": separate_wall,
        "ratio": ratio(separate_wall, one_wall),
        "one_run_fps": round(total_frames / one_wall, 2) if one_wall else None,
        "separate_fps": round(total_frames / separate_wall, 2) if separate_wall else None,
    }


def install_kinemotion(suite: Suite) -> dict:
    """The peer's throwaway venv (created when missing) and its kinemotion version, or an error."""
    pip = KINEMOTION_VENV / "bin" / "pip"
    info: dict = {"venv": rel(KINEMOTION_VENV), "requirement": KINEMOTION}
    steps = []
    if not (KINEMOTION_VENV / "bin" / "kinemotion").is_file():
        python = shutil.which("python3.11") or sys.executable
        steps += [[python, "-m", "venv", "--clear", str(KINEMOTION_VENV)]]
        steps += [[str(pip), "install", "--disable-pip-version-check", KINEMOTION]]
        suite.say(f"peer: installing {KINEMOTION} into {rel(KINEMOTION_VENV)}")
    t0 = time.perf_counter()
    for step in [*steps, [str(pip), "show", "kinemotion"]]:
        try:
            done = subprocess.run(step, capture_output=True, text=True, timeout=1200)
        except (OSError, subprocess.SubprocessError) as exc:
            info["error"] = f"{shown(step, {})}: {exc}"
            return info
        if done.returncode != 0:
            tail = " | ".join(done.stderr.strip().splitlines()[-5:])
            info["error"] = f"{shown(step, {})} exited {done.returncode}: {tail}"
            return info
    if steps:
        info["install_s"] = round(time.perf_counter() - t0, 1)
    info["version"] = next(
        (line.split(":", 1)[1].strip() for line in done.stdout.splitlines() if line.startswith("Version:")), None
    )
    return info


def kinemotion_run(suite: Suite, label: str, video: str, frames: int) -> dict:
    """kinemotion dropjump-analyze on ``video`` with its debug video, sampled like the pipeline."""
    work = suite.workdir(label)
    out = work / "out"
    out.mkdir()
    command = [str(KINEMOTION_VENV / "bin" / "kinemotion"), "dropjump-analyze", video, *FAST]
    command += ["--output", str(out / "debug.mp4"), "--json-output", str(out / "metrics.json")]
    text = shown(command, {out: "OUT"})
    suite.say(f"{label}: {text}")
    run = run_child(command, work, timeout=suite.timeout)
    record = {"label": label, **base_record(run, text, frames)}
    record["video_bytes"] = file_bytes(str(out / "debug.mp4"))
    record["video_ok"] = ok(record) and (record["video_bytes"] or 0) > 0
    suite.finish(label, run, record)
    suite.cleanup(work)
    return record


def section_peer(suite: Suite) -> dict:
    """kinemotion versus the pipeline (annotated video and all outputs) on the same clips."""
    install = install_kinemotion(suite)
    if "error" in install:
        suite.say(f"peer: kinemotion unavailable: {install['error']}")
        return {"install": install, "clips": {}}
    suite.say(f"peer: kinemotion {install['version']}")
    clips = {}
    for minutes in suite.sizes.peer_minutes:
        if minutes:
            clip = clip_of(suite, minutes)
            name, video, frames = f"{minutes:g}min", rel(clip.path), clip.frames
        else:
            name, video, frames = "sample", rel(suite.source), suite.source_frames
        ours = pipeline_run(suite, f"peer.{name}.pipeline", ["--video", video], FAST, frames)
        ours["video_ok"] = video_ok(ours)
        # kinemotion follows one person: the same work as ours with one person slot
        one = pipeline_run(suite, f"peer.{name}.pipeline_one", ["--video", video], ONE, frames)
        one["video_ok"] = video_ok(one)
        theirs = kinemotion_run(suite, f"peer.{name}.kinemotion", video, frames)
        speedup = ratio(ok_value(theirs, "wall_s"), ok_value(ours, "wall_s"), 2)
        speedup_one = ratio(ok_value(theirs, "wall_s"), ok_value(one, "wall_s"), 2)
        suite.say(f"peer.{name}: speedup {speedup} (default outputs), {speedup_one} (--num_poses 1)")
        clips[name] = {
            "video": video, "frames": frames, "pipeline": ours, "pipeline_one": one, "kinemotion": theirs,
            "speedup": speedup, "speedup_one": speedup_one,
        }  # fmt: skip
    return {"install": install, "clips": clips}


SECTION_RUNNERS: dict[str, Callable[[Suite], dict]] = {
    "ceiling": section_ceiling,
    "pipeline": section_pipeline,
    "long": section_long,
    "batch": section_batch,
    "persons": section_persons,
    "vfr": section_vfr,
    "peer": section_peer,
}


def run_section(suite: Suite, name: str) -> dict:
    """One section; a clip that cannot be made or a file error is recorded as the section's error."""
    try:
        return SECTION_RUNNERS[name](suite)
    except (RuntimeError, OSError, subprocess.SubprocessError) as exc:
        suite.say(f"{name}: error: {exc}")
        suite.failures.append(name)
        return {"error": str(exc)}


# --- targets, machine, reports ---------------------------------------------------------------------


def evaluate(targets: tuple[Target, ...], data: dict, quick: bool) -> list[dict]:
    """Each target against the value measured in ``data`` (the sections' results); pass is None when unmeasured."""
    rows = []
    for t in targets:
        measured = dig(data, t.where)
        measured = measured if isinstance(measured, int | float) and not isinstance(measured, bool) else None
        passed = None if measured is None else (measured >= t.target if t.op == ">=" else measured <= t.target)
        commands = [dig(data, (*run, "command")) for run in t.runs]
        rows.append(
            {
                "name": t.name,
                "measure": t.measure,
                "target": t.target,
                "op": t.op,
                "measured": measured,
                "unit": t.unit,
                "pass": passed,
                "quick": quick,
                "commands": [c for c in commands if c],
            }
        )
    return rows


def package_version(names: tuple[str, ...]) -> str | None:
    for name in names:
        try:
            version = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            continue
        return version if len(names) == 1 else f"{version} ({name})"
    return None


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def machine_facts() -> dict:
    """CPU, cores, RAM, OS, Python and the versions of the engines the numbers depend on."""
    try:
        os_name = platform.freedesktop_os_release().get("PRETTY_NAME", platform.system())
    except OSError:
        os_name = platform.system()
    return {
        "cpu": cpu_model(),
        "cores": os.cpu_count(),
        "ram_gib": round(psutil.virtual_memory().total / GIB, 1),
        "os": os_name,
        "kernel": platform.release(),
        "arch": platform.machine(),
        "python": platform.python_version(),
        "packages": {name: package_version(dists) for name, dists in PACKAGES.items()},
    }


def fmt(value: object, digits: int = 1) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def code(command: str | None) -> str:
    return f"`{command}`" if command else ""


def table(header: list[str], rows: list[list[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    return lines + ["| " + " | ".join(row) + " |" for row in rows]


def summary_rows(results: dict) -> list[list[str]]:
    """The main table: every target, then headline figures without a target."""
    rows = []
    for t in results["targets"]:
        digits = 1 if t["unit"] == "s" else 2 if t["unit"] == "x" else 3
        value = fmt(t["measured"], digits) + (
            f" {t['unit']}" if t["unit"] != "ratio" and t["measured"] is not None else ""
        )
        rows.append(
            [t["measure"], value, f"{t['op']} {t['target']:g}", fmt(t["pass"]), "<br>".join(map(code, t["commands"]))]
        )
    data = results["data"]
    ceiling = data.get("ceiling", {})
    if "fps" in ceiling:
        rows.append(
            ["ceiling frames/s (plain loops, all cores)", fmt(ceiling["fps"]), "", "", code(ceiling["command"])]
        )
    for name, run in (dig(data, ("pipeline", "runs")) or {}).items():
        rows.append([f"pipeline frames/s whole run ({name})", fmt(run.get("fps_whole")), "", "", code(run["command"])])
        rows.append([f"pipeline steady frames/s ({name})", fmt(run.get("steady_fps")), "", "", code(run["command"])])
    batch = data.get("batch", {})
    if "ratio" in batch:
        rows.append(
            ["batch: separate runs / one run (wall)", fmt(batch["ratio"], 2), "", "", code(batch["one_run"]["command"])]
        )
    return rows


def ceiling_table(ceiling: dict) -> list[str]:
    if "fps" not in ceiling:
        return [f"Ceiling failed: exit {ceiling.get('exit_code')}, {ceiling.get('error', '')}"]
    per_loop = ", ".join(f"{v:.1f}" for v in ceiling["fps_per_loop"])
    row = [
        fmt(ceiling["loops"]),
        fmt(ceiling["passes"]),
        fmt(ceiling["frames"]),
        fmt(ceiling["loops_wall_s"], 2),
        fmt(ceiling["fps"]),
        per_loop,
    ]
    return table(["loops", "passes", "frames", "wall s", "frames/s", "frames/s per loop"], [row])


def run_row(name: str, run: dict) -> list[str]:
    return [
        name,
        fmt(run.get("frames")),
        fmt(run.get("exit_code")),
        fmt(run.get("wall_s")),
        fmt(run.get("fps_whole")),
        fmt(run.get("peak_rss_mib"), 0),
    ]


RUN_HEADER = ["run", "frames", "exit", "wall s", "frames/s", "peak RSS MiB"]


def pipeline_tables(section: dict) -> list[str]:
    header = [
        "run",
        "frames",
        "exit",
        "wall s",
        "frames/s",
        "steady frames/s",
        "eff. whole",
        "eff. steady",
        "peak RSS MiB",
    ]
    rows = []
    for name, run in section["runs"].items():
        extra = [fmt(run.get("steady_fps")), fmt(run.get("efficiency_whole"), 3), fmt(run.get("efficiency_steady"), 3)]
        rows.append(run_row(name, run)[:5] + extra + [fmt(run.get("peak_rss_mib"), 0)])
    s = section.get("startup") or {}
    startup = [
        fmt(s.get("startup_s"), 2),
        fmt(s.get("stats_startup_s"), 2),
        f"{fmt(s.get('dask_start_s'), 2)} ({fmt(s.get('dask_share'), 2)})",
        fmt(s.get("ray_start_s"), 2),
        fmt(s.get("ray_ready_s"), 2),
        fmt(s.get("first_chunk_started_s"), 2),
        fmt(s.get("last_chunk_finished_s"), 2),
        fmt(s.get("ray_overlapped")),
    ]
    startup_header = [
        "start-up s",
        "stats start-up s",
        "Dask start s (share)",
        "Ray start s",
        "Ray ready s",
        "first chunk started s",
        "last chunk finished s",
        "Ray overlapped",
    ]
    clip = section["clip"]
    return [
        f"Clip: {clip['path']} ({clip['frames']} frames); ceiling {fmt(section.get('ceiling_fps'))} frames/s.",
        "",
        *table(header, rows),
        "",
        "Start-up of the no-video run, seconds since the bench spawned it:",
        "",
        *table(startup_header, [startup]),
    ]


def long_tables(section: dict) -> list[str]:
    rows = [run_row(name, run) for name, run in section["runs"].items()]
    return [
        *table(RUN_HEADER, rows),
        "",
        f"Ceiling's time for the long clip: {fmt(section['ceiling_time_s'])} s; full rate / ceiling:"
        f" {fmt(section['full_rate_vs_ceiling'], 3)}; peak RSS long / short: {fmt(section['memory_ratio'], 3)}.",
    ]


def batch_tables(section: dict) -> list[str]:
    separate = section["separate_runs"]
    rows = [
        [
            "one run (--input)",
            "1",
            fmt(section["clips"] * section["frames_per_clip"]),
            fmt(section["one_run_wall_s"]),
            fmt(section["one_run_fps"]),
        ],
        [
            "one run per clip",
            fmt(len(separate)),
            fmt(section["clips"] * section["frames_per_clip"]),
            fmt(section["separate_wall_s"]),
            fmt(section["separate_fps"]),
        ],
    ]
    return [
        *table(["mode", "runs", "frames", "wall s", "frames/s"], rows),
        "",
        f"Separate runs / one run: {fmt(section['ratio'], 2)}.",
    ]


def peer_tables(section: dict) -> list[str]:
    install = section.get("install", {})
    if "error" in install:
        return [f"kinemotion unavailable: {install['error']}"]
    rows = []
    for name, clip in section["clips"].items():
        for tool in ("pipeline", "pipeline_one", "kinemotion"):
            run = clip.get(tool)
            if run is None:
                continue
            label = "pipeline --num_poses 1" if tool == "pipeline_one" else tool
            speedup = ""
            if tool == "kinemotion":
                speedup = f"{fmt(clip['speedup'], 2)} ({fmt(clip.get('speedup_one'), 2)} with one slot)"
            rows.append([name, label, *run_row(tool, run)[2:], fmt(run.get("video_ok")), speedup])
    header = ["clip", "tool", "exit", "wall s", "frames/s", "peak RSS MiB", "video written", "speedup"]
    return [
        f"kinemotion {install.get('version')} (`dropjump-analyze --quality fast`, lite model).",
        "",
        *table(header, rows),
    ]


def persons_tables(section: dict) -> list[str]:
    rows = []
    for name, clip in section.items():
        for poses in ("1", "auto"):
            run, facts = clip["runs"][poses], clip[poses]
            rows.append(
                [
                    name,
                    poses,
                    *run_row(poses, run)[2:],
                    fmt(facts["persons"]),
                    fmt(facts["chunks"]),
                    fmt(facts["overlap_frames"]),
                    fmt(facts["overlap_work_share"], 3),
                    fmt(clip["fps_auto_vs_1"], 3) if poses == "auto" else "",
                ]
            )
    header = ["clip", "num_poses", "exit", "wall s", "frames/s", "peak RSS MiB", "persons", "chunks",
              "tail frames", "tail work / frames", "frames/s auto / 1"]  # fmt: skip
    return [
        "`--quality fast --no_video`; tail work: each tail frame tracked by the chunk's landmarker and the next "
        "chunk's shadow, over the clip's frames.",
        "",
        *table(header, rows),
    ]


def vfr_tables(section: dict) -> list[str]:
    rows = []
    for name, run in section["runs"].items():
        clip = section["clips"][name]
        label = "variable rate" if clip["variable_frame_rate"] else "constant rate"
        file = f"{clip['path']} ({fmt(clip['fps'], 3)} fps)"
        chunks = [fmt(section["chunks"][name]), fmt(dig(run, ("chunks", "workers")))]
        rows.append([label, file, *run_row(name, run)[1:], *chunks])
    header = ["clip", "file", "frames", "exit", "wall s", "frames/s", "peak RSS MiB", "chunks", "workers"]
    return [
        "`--quality fast --num_poses 1 --no_video`, the same frames (the same packets) at a constant and at a "
        "variable frame rate, one run after the other.",
        "",
        *table(header, rows),
        "",
        f"Variable / constant rate (wall): {fmt(section['vfr_vs_cfr'], 3)}.",
    ]


SECTION_TABLES: dict[str, Callable[[dict], list[str]]] = {
    "ceiling": ceiling_table,
    "pipeline": pipeline_tables,
    "long": long_tables,
    "batch": batch_tables,
    "persons": persons_tables,
    "vfr": vfr_tables,
    "peer": peer_tables,
}


def results_body(results: dict) -> str:
    """The markdown tables (without a title): summary, then one small table per section run."""
    m = results["machine"]
    lines = [
        f"Run {results['started_at']}{' in **quick** mode (small sizes; the targets are defined for the full sizes)' if results['quick'] else ''};"
        f" sections: {', '.join(results['sections'])}; {m['cpu']}, {m['cores']} cores, {m['ram_gib']} GiB.",
        "",
        *table(["measure", "value", "target", "pass", "command"], summary_rows(results)),
    ]
    titles = {
        "ceiling": "Ceiling",
        "pipeline": "Pipeline runs",
        "long": "Long runs",
        "batch": "Batch",
        "persons": "Several people",
        "vfr": "Variable frame rate",
        "peer": "Peer",
    }
    for name in results["sections"]:
        section = results["data"].get(name, {})
        lines += ["", f"### {titles[name]}", ""]
        if "error" in section:
            lines.append(f"Error: {section['error']}")
        else:
            lines += SECTION_TABLES[name](section)
    return "\n".join(lines) + "\n"


def machine_body(machine: dict) -> str:
    packages = ", ".join(f"{name} {version or '-'}" for name, version in machine["packages"].items())
    return (
        "\n".join(
            [
                f"- CPU: {machine['cpu']}, {machine['cores']} cores (os.cpu_count())",
                f"- RAM: {machine['ram_gib']} GiB",
                f"- OS: {machine['os']}, kernel {machine['kernel']} ({machine['arch']})",
                f"- Python {machine['python']}",
                f"- {packages}",
            ]
        )
        + "\n"
    )


DOC_TEMPLATE = """# Benchmarks

The pipeline against its ceiling (plain MediaPipe loops on every core), its start-up, long videos,
many short videos, and a peer tool. The Machine and Results parts are written by

    .venv/bin/python bench/run.py

(options in the docstring of bench/run.py); the rest of this file is left as it is.

## Machine

{machine_start}
{machine_end}

## Results

{results_start}
{results_end}
"""


def replace_between(text: str, markers: tuple[str, str], content: str) -> str:
    """``text`` with what lies between the two markers replaced; the part appended when they are missing."""
    start, end = markers
    if start in text and end in text.split(start, 1)[1]:
        head, rest = text.split(start, 1)
        tail = rest.split(end, 1)[1]
        return f"{head}{start}\n{content}{end}{tail}"
    return text.rstrip("\n") + f"\n\n{start}\n{content}{end}\n"


def update_doc(path: Path, results: dict) -> None:
    if path.is_file():
        text = path.read_text()
    else:
        text = DOC_TEMPLATE.format(
            machine_start=MARKERS["machine"][0],
            machine_end=MARKERS["machine"][1],
            results_start=MARKERS["results"][0],
            results_end=MARKERS["results"][1],
        )
    text = replace_between(text, MARKERS["machine"], machine_body(results["machine"]))
    text = replace_between(text, MARKERS["results"], results_body(results))
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def write_reports(results: dict, out: Path | None) -> list[Path]:
    """results.json, results.md and the docs page (all three into ``out`` when given)."""
    folder = out or Path(__file__).resolve().parent
    doc = out / "benchmarks.md" if out else ROOT / "docs" / "benchmarks.md"
    folder.mkdir(parents=True, exist_ok=True)
    json_path, md_path = folder / "results.json", folder / "results.md"
    json_path.write_text(json.dumps(results, indent=2) + "\n")
    md_path.write_text("# Benchmark results\n\n" + results_body(results))
    update_doc(doc, results)
    return [json_path, md_path, doc]


# --- command line ----------------------------------------------------------------------------------


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--only", default=",".join(SECTIONS), help=f"comma-separated sections (default: {','.join(SECTIONS)})"
    )
    parser.add_argument("--quick", action="store_true", help="small sizes, to check that the suite works")
    parser.add_argument("--skip_peer", "--skip-peer", action="store_true", help="leave out the peer section")
    parser.add_argument("--out", type=Path, default=None, help="write the results and benchmarks.md into this folder")
    parser.add_argument("--source", type=Path, default=ROOT / "public" / "demo.mp4", help="the sample clip")
    parser.add_argument("--ceiling_passes", type=int, default=None, help="ceiling passes (default: 4, quick: 1)")
    parser.add_argument(
        "--timeout", type=float, default=None, help="seconds before a run is stopped (default: 3600, quick: 600)"
    )
    parser.add_argument("--keep", action="store_true", help="keep the runs' temporary folders")
    args = parser.parse_args(argv)
    names = [n.strip() for n in args.only.split(",") if n.strip()]
    unknown = sorted(set(names) - set(SECTIONS))
    if unknown:
        parser.error(f"unknown section(s): {', '.join(unknown)} (choose from {', '.join(SECTIONS)})")
    args.sections = [n for n in SECTIONS if n in names and not (n == "peer" and args.skip_peer)]
    return args


def print_targets(targets: list[dict]) -> None:
    for t in targets:
        verdict = {True: "PASS", False: "MISS", None: "n/a "}[t["pass"]]
        print(f"  {verdict} {t['name']}: {fmt(t['measured'], 3)} (target {t['op']} {t['target']:g} {t['unit']})")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    sys.stdout.reconfigure(line_buffering=True)
    sizes = QUICK if args.quick else FULL
    if args.ceiling_passes:
        sizes = Sizes(**(asdict(sizes) | {"ceiling_passes": args.ceiling_passes}))
    source = args.source.resolve()
    scratch = Path(tempfile.mkdtemp(prefix="bench-run-"))
    timeout = args.timeout or (600.0 if args.quick else 3600.0)
    suite = Suite(source, stream_info(source)[0], sizes, scratch, timeout, args.keep)
    results: dict = {
        "started_at": datetime.now().astimezone().isoformat(timespec="seconds"),
        "quick": args.quick,
        "sections": args.sections,
        "machine": machine_facts(),
        "settings": {
            "source": rel(source),
            "sizes": asdict(sizes),
            "timeout_s": timeout,
            "python": rel(sys.executable),
        },
        "data": {},
    }
    try:
        for name in args.sections:
            suite.say(f"== {name}")
            results["data"][name] = run_section(suite, name)
    finally:
        if args.keep:
            print(f"temporary folders kept in {scratch}")
        else:
            shutil.rmtree(scratch, ignore_errors=True)
    results["targets"] = evaluate(TARGETS, results["data"], args.quick)
    results["failed_runs"] = suite.failures
    for path in write_reports(results, args.out):
        print(f"wrote {rel(path)}")
    print_targets(results["targets"])
    if suite.failures:
        print(f"FAILED: {', '.join(suite.failures)}")
    return 1 if suite.failures else 0


if __name__ == "__main__":
    raise SystemExit(main())
