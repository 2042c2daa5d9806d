"""VideoPipeline: plan, submit chunks to Dask, analyse tracks on Ray, write outputs.

Engines start once (Dask at once, Ray in the background, since it is needed
only when the first track is complete) and serve every video of the run.
Chunks of all videos go through one bounded queue; results are consumed as
they complete. One video's failure is recorded in its result and never stops
the others.
"""

from __future__ import annotations

import contextlib
import logging
import queue
import shutil
import time
from collections import deque
from collections.abc import Callable, Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path

import psutil

from pipeline.analysis.analyzer import Analysis, TrackMeta
from pipeline.analysis.sports import SPORT_PROFILES
from pipeline.config import PipelineConfig
from pipeline.errors import PipelineError, VideoError
from pipeline.inputs import output_names
from pipeline.outputs.annotate import Annotator
from pipeline.outputs.pose_json import write_pose_json
from pipeline.outputs.render import plan_segments, segment_folder
from pipeline.outputs.summary_csv import write_summary_csv
from pipeline.pose.estimator import EstimatorSettings
from pipeline.pose.models import ModelFile, resolve_model
from pipeline.pose.types import PoseChunk
from pipeline.video.plan import ChunkSpec, auto_batch_size, plan_chunks
from pipeline.video.probe import VideoInfo, probe_video

logger = logging.getLogger(__name__)


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
        return (
            f"ok {self.video}: {self.frames} frames, {self.frames_with_person} with a person, "
            f"{self.persons} person(s), {self.fps:.1f} frames/s -> {outputs}"
        )

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
            "videos": [v.to_dict() for v in self.videos],
        }


@dataclass(frozen=True)
class ProgressEvent:
    """Sent to the progress callback: ``stage`` is extract, analyze, done or failed."""

    video: str
    stage: str
    frames_done: int
    frames_total: int


class _Job:
    """Book-keeping of one video while it is in flight."""

    def __init__(self, path: Path, name: str) -> None:
        self.result = VideoResult(video=str(path), name=name)
        self.source = str(path.resolve())  # what the workers open: they may run in another directory
        self.started = time.perf_counter()
        self.specs: list[ChunkSpec] = []
        self.chunks: dict[int, PoseChunk] = {}
        self.futures: list = []
        self.pending_outputs: set[str] = set()
        self.segment_folder: Path | None = None
        self.analysis: Analysis | None = None
        self.finished = False

    @property
    def frames_done(self) -> int:
        return sum(c.num_frames for c in self.chunks.values())


class VideoPipeline:
    """Runs videos through Dask extraction and Ray analysis.

    Use as a context manager (engines stop on exit, only those it started)::

        with VideoPipeline(PipelineConfig(quality="fast")) as vp:
            batch = vp.process(["public/demo.mp4"])
    """

    def __init__(
        self,
        config: PipelineConfig | None = None,
        progress: Callable[[ProgressEvent], None] | None = None,
    ) -> None:
        self.config = config or PipelineConfig()
        self._progress = progress
        self.model: ModelFile | None = None
        self.dask = None
        self._ray_future: Future | None = None
        self._ray_thread: ThreadPoolExecutor | None = None
        self._active: set = set()
        self.timings: dict[str, float] = {}

    # -- engines ---------------------------------------------------------------
    def start(self) -> VideoPipeline:
        from pipeline.engines.dask_engine import DaskEngine

        t0 = time.perf_counter()
        self.model = resolve_model(self.config.resolved_pose_model)
        budget = int(self.config.memory_limit * psutil.virtual_memory().total)
        workers = self.config.resolved_workers
        # Shares of the --memory_limit budget (enforced by the MemoryMonitor).
        worker_memory = int(budget * 0.6 / workers)
        self._ray_thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="ray-start")
        self._ray_future = self._ray_thread.submit(self._start_ray, int(budget * 0.1))
        self.dask = DaskEngine(self.config.resolved_dask_address, workers, worker_memory)
        self.timings["dask_start_s"] = time.perf_counter() - t0
        return self

    def _start_ray(self, object_store_bytes: int):
        from pipeline.engines.ray_engine import RayEngine

        t0 = time.perf_counter()
        analyzers = self.config.analyzers or min(2, self.config.resolved_workers)
        engine = RayEngine(
            self.config.resolved_ray_address,
            analyzers,
            self.config.resolved_analysis,
            object_store_bytes=object_store_bytes,
        )
        self.timings["ray_start_s"] = time.perf_counter() - t0
        return engine

    @property
    def ray(self):
        """The RayEngine (waits for it to finish starting)."""
        return self._ray_future.result() if self._ray_future else None

    def close(self) -> None:
        if self._ray_future is not None:
            # A Ray that never started was reported where it was needed.
            with contextlib.suppress(PipelineError):
                self._ray_future.result().close()
            self._ray_thread.shutdown()
            self._ray_future = None
        if self.dask is not None:
            self.dask.close()
            self.dask = None

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
        preset = self.config.preset
        return EstimatorSettings(
            model_path=self.model.path,
            model_sha256=self.model.sha256,
            num_poses=self.config.num_poses,
            min_detection_confidence=preset["min_detection_confidence"],
            min_presence_confidence=preset["min_presence_confidence"],
            min_tracking_confidence=preset["min_tracking_confidence"],
        )

    def process(self, paths: Iterable[str | Path]) -> BatchResult:
        if self.dask is None:
            raise RuntimeError("VideoPipeline.process() before start() (use it as a context manager)")
        t0 = time.perf_counter()
        paths = [Path(p) for p in paths]
        names = output_names(paths)
        jobs = [_Job(path, names[path]) for path in paths]
        workers = self.dask.worker_count()
        pending: deque[tuple[_Job, ChunkSpec]] = deque()
        for job in jobs:
            try:
                self._plan(job, workers)
            except VideoError as exc:
                self._fail(job, exc.reason)
                continue
            pending.extend((job, spec) for spec in job.specs)
        self._run(pending, max_in_flight=2 * workers)
        batch = BatchResult(videos=[job.result for job in jobs], elapsed_s=time.perf_counter() - t0)
        batch.summary_csv = str(write_summary_csv(Path(self.config.output_dir) / "summary.csv", batch.videos))
        return batch

    def _plan(self, job: _Job, workers: int) -> None:
        job.result.info = info = probe_video(job.result.video)
        batch = self.config.batch_size or auto_batch_size(info.frame_count, workers)
        job.specs = plan_chunks(
            replace(info, path=job.source), batch, self.config.resolved_warmup_frames, self.config.sample_fps
        )
        job.result.chunks = len(job.specs)

    def _run(self, pending: deque, max_in_flight: int) -> None:
        events: queue.Queue = queue.Queue()
        settings = self.estimator_settings()
        self._active: set = set()  # futures submitted and not yet consumed
        open_jobs = {id(job) for job, _ in pending}
        retries = self.config.chunk_retries

        def submit_more() -> None:
            while pending and len(self._active) < max_in_flight:
                job, spec = pending.popleft()
                if job.finished:
                    continue
                future = self.dask.submit_extract(spec, settings, retries)
                job.futures.append(future)
                self._active.add(future)
                future.add_done_callback(lambda f, j=job, s=spec: events.put(("chunk", j, s, f)))

        submit_more()
        while open_jobs:
            kind, job, item, future = events.get()
            if kind == "chunk":
                if future not in self._active:
                    continue  # cancelled when its video failed
                self._active.discard(future)
                self._on_chunk(job, item, future, events)
            elif kind == "analysis":
                self._on_analysis(job, future, events)
            else:
                self._on_output(job, item, future)
            if job.finished:
                open_jobs.discard(id(job))
            submit_more()

    def _on_chunk(self, job: _Job, spec: ChunkSpec, future, events: queue.Queue) -> None:
        if job.finished or future.status == "cancelled":
            return
        try:
            chunk: PoseChunk = future.result()
        except Exception as exc:  # noqa: BLE001 - a task's error travels back as its own type
            self._fail(job, _one_line(exc))
            return
        job.chunks[spec.index] = chunk
        self._emit(job, "extract")
        if len(job.chunks) < len(job.specs):
            return
        try:
            track = self._assemble(job)
        except VideoError as exc:
            self._fail(job, exc.reason)
            return
        info = job.result.info
        meta = TrackMeta(width=info.width, height=info.height, fps=info.fps)
        self._emit(job, "analyze")
        self._ray_future.add_done_callback(lambda ready: self._send_to_ray(ready, job, track, meta, events))

    @staticmethod
    def _send_to_ray(ready: Future, job: _Job, track: PoseChunk, meta: TrackMeta, events: queue.Queue) -> None:
        """Runs once Ray is up (at once if it already is); the analysis comes back as an event."""
        try:
            analysis = ready.result().analyze(track, meta)
        except Exception as exc:  # noqa: BLE001 - Ray did not start: this video's failure
            analysis = Future()
            analysis.set_exception(exc)
        analysis.add_done_callback(lambda done: events.put(("analysis", job, None, done)))

    def _assemble(self, job: _Job) -> PoseChunk:
        """Join the chunks; every planned frame must be there exactly once."""
        ordered = [job.chunks[spec.index] for spec in job.specs]
        reported = job.result.info.frame_count
        for spec, chunk in zip(job.specs, ordered):
            if not spec.is_last and chunk.num_frames != spec.frame_count:
                decoded = spec.start + chunk.num_frames
                raise VideoError(
                    job.result.video,
                    f"the container reports {reported} frames but decoding stopped at frame {decoded}",
                )
        track = PoseChunk.concatenate([c for c in ordered if c.num_frames])
        if track.num_frames < reported:
            logger.warning("%s: container reports %d frames, %d decoded", job.result.video, reported, track.num_frames)
        return track

    def _on_analysis(self, job: _Job, outcome: Future, events: queue.Queue) -> None:
        if job.finished:
            return
        try:
            analysis: Analysis = outcome.result()
            self._write(job, analysis)
            self._submit_outputs(job, analysis, events)
        except (PipelineError, OSError) as exc:
            self._fail(job, _one_line(exc))
            return
        except Exception as exc:  # noqa: BLE001 - an actor's error arrives wrapped by Ray
            self._fail(job, f"analysis failed: {_one_line(exc)}")
            return
        job.analysis = analysis
        if not job.pending_outputs:
            self._succeed(job)

    def _submit_outputs(self, job: _Job, analysis: Analysis, events: queue.Queue) -> None:
        """Annotated video and report, on the Dask workers; each comes back as an event."""
        output = Path(self.config.output_dir)
        output.mkdir(parents=True, exist_ok=True)
        absolute = output.resolve()  # workers may run in another directory
        info = job.result.info
        submitted = {}
        if self.config.render_video:
            folder = job.segment_folder = segment_folder(absolute, job.result.name)
            frames = analysis.track.num_frames
            bounds = [spec.start for spec in job.specs]
            specs = plan_segments(job.source, folder, frames, info.width, info.height, info.fps, bounds)
            profile = SPORT_PROFILES[self.config.sport_type]
            annotator = Annotator(fps=info.fps, frame_count=frames, angles=profile.angles[:4])
            name = f"{job.result.name}_annotated.mp4"
            future = self.dask.submit_render(specs, analysis, annotator, str(absolute / name))
            submitted["annotated_video"] = (future, str(output / name))
        if self.config.report:
            name = f"{job.result.name}_report.html"
            future = self.dask.submit_report(str(absolute / name), job.source, info, analysis, self._settings(job))
            submitted["report"] = (future, str(output / name))
        for name, (future, path) in submitted.items():
            job.pending_outputs.add(name)
            job.futures.append(future)
            future.add_done_callback(lambda f, j=job, n=name, p=path: events.put(("output", j, (n, p), f)))

    def _on_output(self, job: _Job, output: tuple[str, str], future) -> None:
        name, path = output
        if job.finished:
            return
        try:
            future.result()
            job.result.outputs[name] = path
        except Exception as exc:  # noqa: BLE001 - a task's error travels back as its own type
            self._fail(job, f"{name.replace('_', ' ')}: {_one_line(exc)}")
            return
        job.pending_outputs.discard(name)
        if not job.pending_outputs:
            self._succeed(job)

    def _succeed(self, job: _Job) -> None:
        result = job.result
        summary = job.analysis.summary
        result.success = True
        result.frames = summary["frames"]
        result.frames_analysed = summary["frames_analysed"]
        result.frames_with_person = summary["frames_with_person"]
        result.persons = summary["persons_found"]
        result.summary = summary
        result.elapsed_s = time.perf_counter() - job.started
        job.analysis = None  # the outputs are written; free the arrays
        job.finished = True
        self._emit(job, "done")

    def _settings(self, job: _Job) -> dict:
        return self.config.to_dict() | {"batch_size": job.specs[0].frame_count}

    def _write(self, job: _Job, analysis: Analysis) -> None:
        header = {
            "video": job.result.info.to_dict(),
            "model": self.model.to_dict(),
            "settings": self._settings(job),
        }
        path = Path(self.config.models_dir) / f"{job.result.name}_pose.json"
        write_pose_json(path, header, analysis)
        job.result.outputs["pose_json"] = str(path)

    def _fail(self, job: _Job, reason: str) -> None:
        if job.finished:
            return
        job.finished = True
        for future in job.futures:
            self._active.discard(future)
            future.cancel()
        if job.segment_folder is not None:
            shutil.rmtree(job.segment_folder, ignore_errors=True)
        job.analysis = None
        job.result.success = False
        job.result.error = reason
        job.result.elapsed_s = time.perf_counter() - job.started
        self._emit(job, "failed")

    def _emit(self, job: _Job, stage: str) -> None:
        if self._progress is None:
            return
        total = job.result.info.frame_count if job.result.info else 0
        self._progress(ProgressEvent(job.result.video, stage, job.frames_done, total))


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
