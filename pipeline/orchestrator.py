"""VideoPipeline: plan, submit chunks to Dask, analyse tracks on Ray, write outputs.

Engines start once (Dask at once, Ray in the background, since it is needed
only when the first track is complete) and serve every video of the run.

Streaming: Dask workers write each chunk's landmarks to the video's work
folder and return a small record; the Ray actor reads the chunks from disk and
stores its analysis there; the output tasks (pose JSON, annotated video
segments, report) read the stored analysis a frame range at a time. The driver
holds records and summaries only, so its memory does not grow with a video's
length.

Tasks of all videos go through one queue. A task is submitted only while a
worker is free and the MemoryMonitor has room for it (see ``memory.py``);
rendering and reports of a video whose analysis is done go first, so videos
finish one after another. A re-run finds the chunks an earlier run finished
(``jobs.py``) and skips videos that are complete. One video's failure is
recorded in its result and never stops the others.
"""

from __future__ import annotations

import contextlib
import logging
import os
import queue
import shutil
import time
from collections import deque
from collections.abc import Callable, Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

from pipeline.analysis.analyzer import TrackMeta
from pipeline.analysis.sports import SPORT_PROFILES
from pipeline.config import PipelineConfig
from pipeline.errors import OutputError, PipelineError, VideoError
from pipeline.inputs import output_names
from pipeline.jobs import ChunkRecord, WorkFolder, ensure_writable, fingerprint
from pipeline.llm.build import video_files
from pipeline.memory import MemoryMonitor, MiB, ResourcePlan, kind_bytes, plan_resources
from pipeline.outputs.annotate import Annotator
from pipeline.outputs.render import RenderSpec, plan_segments, segment_folder
from pipeline.outputs.summary_csv import write_summary_csv
from pipeline.pose.estimator import EstimatorSettings
from pipeline.pose.models import ModelFile, resolve_model
from pipeline.stats import ChunkTiming, RunStats
from pipeline.video.plan import ChunkSpec, auto_batch_size, plan_chunks
from pipeline.video.probe import VideoInfo, probe_video

logger = logging.getLogger(__name__)

REFERENCE_FRAME_WH = (1920, 1080)  # frame size the memory plan reserves room for; larger frames run fewer at once
STALL_S = 10.0  # how long a task that does not fit waits for memory to be released before its video fails
# Disk space checked before a video starts (generous estimates; measured on the sample clip).
WORK_BYTES_PER_FRAME_SLOT = 3 * 1024  # chunk artifacts and the stored analysis
JSON_BYTES_PER_FRAME_SLOT = 6 * 1024  # pose JSON
VIDEO_BYTES_PER_PIXEL = 0.04  # annotated H.264 at CRF 23 (the sample clip needs 0.011)
# The analyser's working set while it runs: measured 3.4 KB per frame and person slot on the
# 15-minute track; linking can find more people than --num_poses slots (4 from 2 there), hence 10 KB.
ANALYSIS_BYTES_PER_FRAME_SLOT = 10 * 1024


@dataclass
class VideoResult:
    """Outcome of one video: ``success`` with outputs, or ``error`` (one line)."""

    video: str
    name: str
    success: bool = False
    error: str | None = None
    info: VideoInfo | None = None
    frames: int = 0
    frames_analysed: int = 0
    frames_with_person: int = 0
    persons: int = 0
    chunks: int = 0
    chunks_reused: int = 0  # finished by an earlier run and not recomputed
    skipped: bool = False  # complete from an earlier run with the same input and settings
    elapsed_s: float = 0.0
    outputs: dict[str, str] = field(default_factory=dict)
    summary: dict | None = None

    @property
    def fps(self) -> float:
        return self.frames_analysed / self.elapsed_s if self.elapsed_s > 0 else 0.0

    def line(self) -> str:
        if not self.success:
            return f"FAILED {self.video}: {self.error}"
        outputs = ", ".join(self.outputs.values())
        if self.skipped:
            return f"done {self.video}: complete from an earlier run with the same settings (--force redoes it) -> {outputs}"
        reused = f", {self.chunks_reused}/{self.chunks} chunks from an earlier run" if self.chunks_reused else ""
        return (
            f"ok {self.video}: {self.frames} frames, {self.frames_with_person} with a person, "
            f"{self.persons} person(s), {self.fps:.1f} frames/s{reused} -> {outputs}"
        )

    @classmethod
    def from_dict(cls, data: dict) -> VideoResult:
        fields = {k: v for k, v in data.items() if k in cls.__dataclass_fields__}
        fields["info"] = VideoInfo(**{k: v for k, v in data["info"].items() if k != "duration_s"})
        return cls(**fields)

    def to_dict(self) -> dict:
        return {
            "video": self.video,
            "name": self.name,
            "success": self.success,
            "error": self.error,
            "info": self.info.to_dict() if self.info else None,
            "frames": self.frames,
            "frames_analysed": self.frames_analysed,
            "frames_with_person": self.frames_with_person,
            "persons": self.persons,
            "chunks": self.chunks,
            "chunks_reused": self.chunks_reused,
            "skipped": self.skipped,
            "elapsed_s": round(self.elapsed_s, 3),
            "fps": round(self.fps, 2),
            "outputs": dict(self.outputs),
            "summary": self.summary,
        }


@dataclass
class BatchResult:
    videos: list[VideoResult]
    elapsed_s: float = 0.0
    summary_csv: str | None = None
    memory: dict = field(default_factory=dict)  # the MemoryMonitor's report

    @property
    def success(self) -> bool:
        return all(v.success for v in self.videos)

    @property
    def failed(self) -> list[VideoResult]:
        return [v for v in self.videos if not v.success]

    def to_dict(self) -> dict:
        return {
            "success": self.success,
            "elapsed_s": round(self.elapsed_s, 3),
            "summary_csv": self.summary_csv,
            "memory": self.memory,
            "videos": [v.to_dict() for v in self.videos],
        }


@dataclass(frozen=True)
class ProgressEvent:
    """Sent to the progress callback. ``stage``: planned (``frames_done`` counts
    frames an earlier run finished), extract, analyze, render, done, failed or skipped."""

    video: str
    stage: str
    frames_done: int
    frames_total: int
    name: str = ""


@dataclass
class _Task:
    """A unit of work waiting for a Dask worker: a chunk to extract, a segment to render, a report."""

    job: _Job
    kind: str  # extract, render or report
    item: object = None


class _Job:
    """Book-keeping of one video while it is in flight."""

    def __init__(self, path: Path, name: str, work: WorkFolder) -> None:
        self.result = VideoResult(video=str(path), name=name)
        self.source = str(path.resolve())  # what the workers open: they may run in another directory
        self.work = work
        self.started = time.perf_counter()
        self.specs: list[ChunkSpec] = []
        self.records: dict[int, ChunkRecord] = {}
        self.futures: list = []
        self.pending_outputs: set[str] = set()
        self.segments: list[RenderSpec] = []
        self.segment_futures: list = []
        self.segment_folder: Path | None = None
        self.summary: dict | None = None
        self.output_key: dict = {}
        self.store = ""  # the stored analysis the output tasks read
        self.annotator: Annotator | None = None
        self.video_path = self.video_display = ""
        self.report_path = self.report_display = ""
        self.json_display = ""
        self.llm_display = ""
        self.finished = False

    @property
    def frames_done(self) -> int:
        return sum(r.frames for r in self.records.values())


class VideoPipeline:
    """Runs videos through Dask extraction and Ray analysis, inside a memory budget.

    Use as a context manager (engines stop on exit, only those it started)::

        with VideoPipeline(PipelineConfig(quality="fast")) as vp:
            batch = vp.process(["public/demo.mp4"])
    """

    def __init__(
        self,
        config: PipelineConfig | None = None,
        progress: Callable[[ProgressEvent], None] | None = None,
        stats: RunStats | None = None,
    ) -> None:
        self.config = config or PipelineConfig()
        self._progress = progress
        self.stats = stats or RunStats()
        self.model: ModelFile | None = None
        self.dask = None
        self.resources: ResourcePlan | None = None
        self.monitor: MemoryMonitor | None = None
        self._ray_future: Future | None = None
        self._ray_thread: ThreadPoolExecutor | None = None
        self._active: dict = {}  # weighted futures in flight -> bytes
        self._pending: deque[_Task] = deque()
        self._events: queue.Queue = queue.Queue()
        self._disk_reserved: dict[int, int] = {}
        self._stalled_since: float | None = None

    # -- engines ---------------------------------------------------------------
    def start(self) -> VideoPipeline:
        from pipeline.engines.dask_engine import DaskEngine

        config = self.config
        self.stats.mark("engines_start")
        self.model = resolve_model(config.resolved_pose_model)
        self.resources = plan = plan_resources(
            config.memory_limit,
            cores=os.cpu_count() or 1,
            workers=config.workers,
            analyzers=config.analyzers,
            largest_frame_wh=REFERENCE_FRAME_WH,
            render=config.render_video,
            embedded_ray=not config.resolved_ray_address,
            embedded_dask=not config.resolved_dask_address,
        )
        logger.debug("memory plan: %s", plan.to_dict())
        self._ray_thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="ray-start")
        self._ray_future = self._ray_thread.submit(self._start_ray, plan)
        self.stats.mark("dask_start")
        self.dask = DaskEngine(config.resolved_dask_address, plan.workers, plan.worker_limit)
        self.stats.mark("dask_ready")
        self.monitor = MemoryMonitor(plan.budget, plan.high_mark, plan.low_mark, roots=self._engine_pids).start()
        self.stats.mark("monitor_started")
        self._ray_future.add_done_callback(lambda _: self.monitor.refresh_roots())
        return self

    def _start_ray(self, plan: ResourcePlan):
        from pipeline.engines.ray_engine import RayEngine

        self.stats.mark("ray_start")
        engine = RayEngine(
            self.config.resolved_ray_address,
            plan.analyzers,
            self.config.resolved_analysis,
            object_store_bytes=plan.object_store,
        )
        self.stats.mark("ray_ready")
        return engine

    def _engine_pids(self) -> list[int]:
        """Processes of attached engines running on this machine (embedded ones are our descendants)."""
        pids = []
        if self.dask is not None and not self.dask.embedded:
            pids += self.dask.local_worker_pids()
        ray = self._ray_future
        if ray is not None and ray.done() and ray.exception() is None and not ray.result().embedded:
            pids += ray.result().local_actor_pids()
        return pids

    @property
    def ray(self):
        """The RayEngine (waits for it to finish starting)."""
        return self._ray_future.result() if self._ray_future else None

    def close(self) -> None:
        self.stats.mark("engines_stop")
        if self.monitor is not None:
            self.monitor.stop()
        ray_closed = None
        if self._ray_future is not None:
            # Both engines stop at the same time (each takes about a second).
            ray_closed = self._ray_thread.submit(self._close_ray, self._ray_future)
            self._ray_future = None
        if self.dask is not None:
            self.dask.close()
            self.dask = None
            self.stats.mark("dask_stopped")
        if ray_closed is not None:
            ray_closed.result()
            self._ray_thread.shutdown()
        self.stats.mark("engines_stopped")

    def _close_ray(self, started: Future) -> None:
        # A Ray that never started was reported where it was needed.
        with contextlib.suppress(PipelineError):
            started.result().close()
        self.stats.mark("ray_stopped")

    def __enter__(self) -> VideoPipeline:
        try:
            return self.start()
        except BaseException:
            self.close()
            raise

    def __exit__(self, *exc_info) -> None:
        self.close()

    # -- processing ------------------------------------------------------------
    def estimator_settings(self) -> EstimatorSettings:
        return EstimatorSettings.from_preset(self.config.preset, self.model, self.config.num_poses)

    def process(self, paths: Iterable[str | Path]) -> BatchResult:
        if self.dask is None:
            raise RuntimeError("VideoPipeline.process() before start() (use it as a context manager)")
        t0 = time.perf_counter()
        for folder in self.config.output_folders:
            ensure_writable(folder)
        paths = [Path(p) for p in paths]
        names = output_names(paths)
        jobs = [_Job(path, names[path], WorkFolder.for_video(self.config.output_dir, names[path])) for path in paths]
        self._events = queue.Queue()
        self._pending.clear()
        self._active.clear()
        self._disk_reserved.clear()
        self._settings = self.estimator_settings()
        for job in jobs:
            try:
                job.result.info = probe_video(job.result.video)
            except (VideoError, OSError) as exc:
                self._fail(job, _one_line(exc))
        self.stats.mark("videos_probed")
        batch_frames = sum(job.result.info.frame_count for job in jobs if not job.finished)
        for job in jobs:
            if job.finished:
                continue
            try:
                self._prepare(job, batch_frames)
            except (VideoError, OutputError, OSError) as exc:
                self._fail(job, _one_line(exc))
        self.stats.mark("videos_planned")
        self._run([job for job in jobs if not job.finished])
        batch = BatchResult(videos=[job.result for job in jobs], elapsed_s=time.perf_counter() - t0)
        batch.memory = self.monitor.report()
        batch.summary_csv = str(write_summary_csv(Path(self.config.output_dir) / "summary.csv", batch.videos))
        return batch

    # -- planning and resuming ---------------------------------------------------
    def _prepare(self, job: _Job, batch_frames: int) -> None:
        """Plan the chunks of a probed video (the whole batch decides their size),
        check disk space, and find what an earlier run finished."""
        info = job.result.info
        workers = self.dask.worker_count()
        batch = self.config.batch_size or auto_batch_size(info.frame_count, workers, batch_frames)
        job.specs = plan_chunks(
            replace(info, path=job.source), batch, self.config.resolved_warmup_frames, self.config.sample_fps
        )
        job.result.chunks = len(job.specs)
        source = fingerprint(job.source)
        job.output_key = self._output_key(job)
        done = None if self.config.force else job.work.completed(source, job.output_key)
        if done is not None:
            self._skip(job, done)
            return
        self._check_disk(job)
        job.work.open(source, self._extract_key(job), force=self.config.force)
        job.records = job.work.finished_chunks({spec.index: spec.start for spec in job.specs})
        job.result.chunks_reused = len(job.records)
        if job.records:
            logger.info(
                "%s: %d of %d chunks done in an earlier run", job.result.video, len(job.records), len(job.specs)
            )
        self._emit(job, "planned")
        self._pending.extend(_Task(job, "extract", spec) for spec in job.specs if spec.index not in job.records)
        if len(job.records) == len(job.specs):
            self._chunks_complete(job)

    def _extract_key(self, job: _Job) -> dict:
        """What the chunk artifacts depend on."""
        settings = asdict(self._settings)
        settings.pop("model_path")
        return {
            "estimator": settings,
            "sample_fps": self.config.sample_fps,
            "chunks": [[s.warmup_start, s.start, s.end] for s in job.specs],
        }

    def _output_key(self, job: _Job) -> dict:
        """What the outputs depend on (not how many workers made them)."""
        settings = self._settings_block(job)
        for name in ("workers", "analyzers", "memory_limit", "dask_address", "ray_address", "chunk_retries", "force"):
            settings.pop(name, None)
        if self.config.batch_size is None:
            # Automatic chunking depends on the workers and on the other videos of the batch:
            # like the worker count, it does not make a finished video's outputs stale.
            settings.pop("batch_size", None)
        return {"settings": settings, "model_sha256": self.model.sha256, "name": job.result.name}

    def _skip(self, job: _Job, done: dict) -> None:
        """A video finished by an earlier run with the same input and settings."""
        recorded = VideoResult.from_dict(done)
        recorded.skipped = True
        recorded.video = job.result.video
        job.result = recorded
        job.finished = True
        self._emit(job, "skipped")

    def _check_disk(self, job: _Job) -> None:
        """Fail before writing anything when the outputs would not fit on their file systems."""
        info = job.result.info
        slots = self.config.num_poses
        needs: dict[str, int] = {
            "work files": info.frame_count * slots * WORK_BYTES_PER_FRAME_SLOT,
            "pose JSON": info.frame_count * slots * JSON_BYTES_PER_FRAME_SLOT,
        }
        folders = {"work files": self.config.output_dir, "pose JSON": self.config.models_dir}
        if self.config.render_video:
            # Segments and the joined file exist side by side until the join ends.
            needs["annotated video"] = 2 * int(info.frame_count * info.width * info.height * VIDEO_BYTES_PER_PIXEL)
            folders["annotated video"] = self.config.output_dir
        by_device: dict[int, list[str]] = {}
        for what, folder in folders.items():
            by_device.setdefault(os.stat(folder).st_dev, []).append(what)
        for device, parts in by_device.items():
            folder = folders[parts[0]]
            need = sum(needs[p] for p in parts)
            free = shutil.disk_usage(folder).free - self._disk_reserved.get(device, 0)
            if need > free:
                largest = max(parts, key=needs.get)
                raise OutputError(
                    f"not enough disk space for the {largest} in {folder}: about {need / MiB:.1f} MiB needed "
                    f"({', '.join(f'{p} {needs[p] / MiB:.1f}' for p in parts)}), {max(0, free) / MiB:.1f} MiB free"
                )
            self._disk_reserved[device] = self._disk_reserved.get(device, 0) + need

    # -- the event loop ---------------------------------------------------------------
    def _run(self, jobs: list[_Job]) -> None:
        open_jobs = {id(job) for job in jobs}
        for job in jobs:
            if job.finished:
                open_jobs.discard(id(job))
        while open_jobs:
            self._submit_more()
            open_jobs -= {id(job) for job in jobs if job.finished}  # the submitter may fail a video
            if not open_jobs:
                break
            try:
                kind, job, item, future = self._events.get(timeout=0.1)
            except queue.Empty:
                continue
            weighted = self._active.pop(job if kind == "analysis" else future, None) is not None
            if kind == "extract":
                if weighted:
                    self._on_chunk(job, item, future)
            elif kind == "analysis":
                self._on_analysis(job, future)
            elif kind in ("render", "report_slot"):
                pass  # the join task / the report's output event carry the outcome
            else:
                self._on_output(job, item, future)
            if job.finished:
                open_jobs.discard(id(job))

    def _submit_more(self) -> None:
        """Submit queued tasks while the workers and the memory budget have room."""
        plan = self.resources
        while self._pending:
            task = self._pending[0]
            if task.job.finished:
                self._pending.popleft()
                continue
            weight = self._weight(task)
            if self._active:
                if len(self._active) >= plan.workers or not self.monitor.may_submit():
                    return
                if sum(self._active.values()) + weight > plan.task_reserve:
                    return
            elif self.monitor.current + weight > plan.budget and not self._wait_for_room(task, weight):
                continue  # the task's video failed: it can never fit
            self._stalled_since = None
            self._pending.popleft()
            self._submit(task, weight)

    def _wait_for_room(self, task: _Task, weight: int) -> bool:
        """Nothing runs yet one task does not fit: wait a little for memory to be
        released; past ``STALL_S`` fail the task's video saying what it needed."""
        now = time.monotonic()
        if self._stalled_since is None:
            self._stalled_since = now
        if now - self._stalled_since < STALL_S:
            time.sleep(0.1)
            self.monitor.sample()
            return self.monitor.current + weight <= self.resources.budget
        self._stalled_since = None
        info = task.job.result.info
        what = (
            f"the analysis of {task.job.frames_done} frames"
            if task.kind == "analyze"
            else f"one {task.kind} task for {info.width}x{info.height} frames"
        )
        self._fail(
            task.job,
            f"memory budget exceeded: the run uses {self.monitor.current / MiB:.0f} MiB at rest and {what} "
            f"needs about {weight / MiB:.0f} MiB more; the budget is {self.resources.budget / MiB:.0f} MiB "
            "(raise --memory_limit or use fewer --workers)",
        )
        return False

    def _weight(self, task: _Task) -> int:
        """Memory the task needs on top of what the run holds at rest."""
        if task.kind == "analyze":
            return task.job.frames_done * self.config.num_poses * ANALYSIS_BYTES_PER_FRAME_SLOT
        info = task.job.result.info
        return kind_bytes(task.kind, info.width, info.height)

    def _submit_analysis(self, job: _Job, weight: int) -> None:
        """Send the video's chunk records to a Ray actor (once Ray is up); the summary comes back as an event."""
        info = job.result.info
        meta = TrackMeta(width=info.width, height=info.height, fps=info.fps)
        records = [job.records[spec.index] for spec in job.specs]
        folder = str(job.work.analysis_folder.resolve())
        events = self._events
        self._emit(job, "analyze")

        def send(ready: Future) -> None:
            try:
                outcome = ready.result().analyze_stored(records, meta, folder)
            except Exception as exc:  # noqa: BLE001 - Ray did not start: this video's failure
                outcome = Future()
                outcome.set_exception(exc)
            outcome.add_done_callback(lambda done: events.put(("analysis", job, None, done)))

        self._active[job] = weight  # until its event arrives
        self._ray_future.add_done_callback(send)

    def _submit(self, task: _Task, weight: int) -> None:
        job, retries = task.job, self.config.chunk_retries
        if task.kind == "analyze":
            self._submit_analysis(job, weight)
            return
        if task.kind == "extract":
            spec = task.item
            path = str(job.work.chunk_path(spec.index).resolve())
            future = self.dask.submit_extract(spec, self._settings, path, retries)
            self.stats.mark("first_chunk_submitted")
        elif task.kind == "render":
            spec = task.item
            future = self.dask.submit_render_segment(spec, job.store, job.annotator, retries)
            job.segment_futures.append(future)
            if len(job.segment_futures) == len(job.segments):
                self._watch(
                    job, "annotated_video", self.dask.submit_join(job.segments, job.video_path, job.segment_futures)
                )
        else:  # report
            future = self.dask.submit_report(
                job.report_path, job.source, job.result.info, job.store, self._settings_block(job), retries
            )
            self._watch(job, "report", future)
            task = _Task(job, "report_slot")
        job.futures.append(future)
        self._active[future] = weight
        future.add_done_callback(lambda f, t=task: self._events.put((t.kind, t.job, t.item, f)))

    def _watch(self, job: _Job, name: str, future) -> None:
        """An output's future: its outcome comes back as an ``output`` event."""
        path = {
            "annotated_video": job.video_display,
            "report": job.report_display,
            "pose_json": job.json_display,
            "llm_examples": job.llm_display,
        }[name]
        job.futures.append(future)
        future.add_done_callback(lambda f: self._events.put(("output", job, (name, path), f)))

    # -- results -------------------------------------------------------------------
    def _on_chunk(self, job: _Job, spec: ChunkSpec, future) -> None:
        if job.finished or future.status == "cancelled":
            return
        try:
            record: ChunkRecord = future.result()
        except Exception as exc:  # noqa: BLE001 - a task's error travels back as its own type
            self._fail(job, _task_error(exc, f"chunk {spec.index} (frames {spec.start}-{spec.end - 1})"))
            return
        job.records[spec.index] = record
        self.stats.chunk(
            ChunkTiming(job.result.name, spec.index, record.frames, record.worker, record.started, record.finished)
        )
        self._emit(job, "extract")
        if len(job.records) == len(job.specs):
            self._chunks_complete(job)

    def _chunks_complete(self, job: _Job) -> None:
        """Every chunk is on disk: check the frames are all there and send the track to Ray."""
        reported = job.result.info.frame_count
        for spec in job.specs:
            record = job.records[spec.index]
            if not spec.is_last and record.frames != spec.frame_count:
                decoded = spec.start + record.frames
                self._fail(job, f"the container reports {reported} frames but decoding stopped at frame {decoded}")
                return
        frames = job.frames_done
        if frames < reported:
            logger.warning("%s: container reports %d frames, %d decoded", job.result.video, reported, frames)
        # The analysis holds the whole track while it runs: it is admitted like a task.
        self._pending.appendleft(_Task(job, "analyze"))

    def _on_analysis(self, job: _Job, outcome: Future) -> None:
        if job.finished:
            return
        try:
            job.summary = outcome.result()
            self._submit_outputs(job)
        except (PipelineError, OSError) as exc:
            self._fail(job, _one_line(exc))
        except Exception as exc:  # noqa: BLE001 - an actor's error arrives wrapped by Ray
            self._fail(job, f"analysis failed: {_one_line(exc)}")

    def _submit_outputs(self, job: _Job) -> None:
        """Pose JSON, annotated video and report, on the Dask workers; each comes back as an event.
        Rendering and the report go to the front of the queue: finishing a video comes first."""
        output = Path(self.config.output_dir)
        absolute = output.resolve()  # workers may run in another directory
        info = job.result.info
        job.store = str(job.work.analysis_folder.resolve())
        name = job.result.name
        json_path = Path(self.config.models_dir) / f"{name}_pose.json"
        job.json_display = str(json_path)
        header = {"video": info.to_dict(), "model": self.model.to_dict(), "settings": self._settings_block(job)}
        job.pending_outputs.add("pose_json")
        retries = self.config.chunk_retries
        self._watch(job, "pose_json", self.dask.submit_pose_json(str(json_path.resolve()), header, job.store, retries))
        if self.config.llm_data_dir:
            llm_dir = Path(self.config.llm_data_dir)
            job.llm_display = str(video_files(llm_dir, name)[0])
            job.pending_outputs.add("llm_examples")
            future = self.dask.submit_llm_examples(
                str(llm_dir.resolve()), name, info.fps, self.config.sport_type, job.store, retries
            )
            self._watch(job, "llm_examples", future)
        front: list[_Task] = []
        if self.config.render_video:
            job.segment_folder = segment_folder(absolute, name)
            frames = job.summary["frames"]
            bounds = [spec.start for spec in job.specs]
            job.segments = plan_segments(
                job.source, job.segment_folder, frames, info.width, info.height, info.fps, bounds
            )
            profile = SPORT_PROFILES[self.config.sport_type]
            job.annotator = Annotator(fps=info.fps, frame_count=frames, angles=profile.angles[:4])
            job.video_path = str(absolute / f"{name}_annotated.mp4")
            job.video_display = str(output / f"{name}_annotated.mp4")
            job.pending_outputs.add("annotated_video")
            front += [_Task(job, "render", spec) for spec in job.segments]
        if self.config.report:
            job.report_path = str(absolute / f"{name}_report.html")
            job.report_display = str(output / f"{name}_report.html")
            job.pending_outputs.add("report")
            front.append(_Task(job, "report"))
        self._pending.extendleft(reversed(front))
        self._emit(job, "render")

    def _on_output(self, job: _Job, output: tuple[str, str], future) -> None:
        name, path = output
        if job.finished:
            return
        try:
            future.result()
            job.result.outputs[name] = path
        except Exception as exc:  # noqa: BLE001 - a task's error travels back as its own type
            self._fail(job, f"{name.replace('_', ' ')}: {_task_error(exc, name.replace('_', ' '))}")
            return
        job.pending_outputs.discard(name)
        if not job.pending_outputs:
            self._succeed(job)

    def _succeed(self, job: _Job) -> None:
        result = job.result
        summary = job.summary
        result.success = True
        result.frames = summary["frames"]
        result.frames_analysed = summary["frames_analysed"]
        result.frames_with_person = summary["frames_with_person"]
        result.persons = summary["persons_found"]
        result.summary = summary
        result.elapsed_s = time.perf_counter() - job.started
        result.outputs = dict(sorted(result.outputs.items()))
        job.finished = True
        job.work.drop_analysis()
        job.work.mark_complete(job.output_key, result.to_dict())
        self._emit(job, "done")

    def _settings_block(self, job: _Job) -> dict:
        return self.config.to_dict() | {"batch_size": job.specs[0].frame_count}

    def _fail(self, job: _Job, reason: str) -> None:
        if job.finished:
            return
        job.finished = True
        self._active.pop(job, None)
        for future in job.futures:
            self._active.pop(future, None)
            future.cancel()
        if job.segment_folder is not None:
            shutil.rmtree(job.segment_folder, ignore_errors=True)
        with contextlib.suppress(OSError):
            job.work.drop_analysis()
        job.result.success = False
        job.result.error = reason
        job.result.elapsed_s = time.perf_counter() - job.started
        self._emit(job, "failed")

    def _emit(self, job: _Job, stage: str) -> None:
        if stage != "extract":
            self.stats.video_mark(job.result.name, stage)
        if self._progress is None:
            return
        total = job.result.info.frame_count if job.result.info else 0
        done = total if stage == "skipped" else job.frames_done
        self._progress(ProgressEvent(job.result.video, stage, done, total, job.result.name))


def _task_error(exc: BaseException, what: str) -> str:
    """One line for a failed Dask task; a task whose workers kept dying says so."""
    if type(exc).__name__ == "KilledWorker":
        return f"the Dask workers running {what} died repeatedly (out of memory or killed); see the worker logs"
    return _one_line(exc)


def _one_line(exc: BaseException) -> str:
    if isinstance(exc, VideoError):
        return exc.reason  # the result line shows the path already
    text = str(exc).strip().splitlines()
    first = text[0] if text else type(exc).__name__
    return first if isinstance(exc, PipelineError) else f"{type(exc).__name__}: {first}"


def process_videos(paths: Iterable[str | Path], config: PipelineConfig | None = None, **overrides) -> BatchResult:
    """Process several videos with one set of engines."""
    config = (config or PipelineConfig()).with_overrides(**overrides)
    with VideoPipeline(config) as pipeline:
        return pipeline.process(paths)


def process_video(path: str | Path, config: PipelineConfig | None = None, **overrides) -> VideoResult:
    """Process one video; returns its VideoResult (check ``success``)."""
    return process_videos([path], config, **overrides).videos[0]
