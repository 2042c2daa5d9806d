"""VideoPipeline: wires plan -> scheduler -> engines -> writers.

For each video: probe and plan it (``plan.py``), extract its chunks on the Dask
workers, analyse the track on a Ray actor, then run the registered output
writers (``outputs/registry.py``) on the Dask workers. Every task goes through
one Scheduler (``scheduler.py``) that admits it while a worker is free and the
MemoryMonitor has room; the outputs of a video whose analysis is done go
first, so videos finish one after another.

Streaming: workers write each chunk's landmarks to the video's work folder
(``workdir.py``) and return a small record; the Ray actor reads the chunks from
disk and stores its analysis there; the writers read the stored analysis a
frame range at a time. The driver holds records and summaries only, so its
memory does not grow with a video's length. A re-run finds the chunks an
earlier run finished, skips videos that are complete and, for a complete video
that misses an output, writes that output alone from the kept analysis. One
video's failure is recorded in its result and never stops the others.

Two runs on one output folder: a run works on a video only while it holds the
video's lock (``WorkFolder.lock``); a video another run holds is skipped at
once (``held``). ``summary.csv`` is rewritten at the end from the manifests of
the whole output folder, under the folder's lock.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable, Iterable
from concurrent.futures import Future, InvalidStateError
from dataclasses import replace
from functools import partial
from pathlib import Path

import pipeline.llm  # noqa: F401 - registers the LLM examples writer
from pipeline import storage
from pipeline.analysis.analyzer import TrackMeta
from pipeline.config import PipelineConfig
from pipeline.engines import Engines
from pipeline.engines.ray_engine import analyze_stored_task
from pipeline.errors import OutputError, PipelineError, VideoError, one_line_reason
from pipeline.inputs import Input, as_input, output_names
from pipeline.llm.stage import check_ready, run_llm_stage
from pipeline.memory import (
    ANALYZER_BYTES,
    RAY_BASE_BYTES,
    MemoryMonitor,
    MiB,
    ResourcePlan,
    kind_bytes,
    plan_resources,
)
from pipeline.outputs.registry import REGISTRY, OutputTask, OutputWriter, VideoOutputs
from pipeline.outputs.summary_csv import write_summary_csv
from pipeline.plan import WORK_BYTES_PER_FRAME_SLOT, DiskCheck, plan_video
from pipeline.pose import MediaPipeSettings, ModelFile, resolve_model
from pipeline.pose.models import shared_copy
from pipeline.results import BatchResult, ChunkEvent, ProgressEvent, VideoResult
from pipeline.scheduler import Done, Scheduler, Stalled, Work
from pipeline.state import Stage, VideoRun
from pipeline.stats import ChunkTiming, RunStats
from pipeline.video.probe import frame_table, probe_video, save_frame_table
from pipeline.workdir import WORK_FOLDER, ChunkRecord, VideoState, WorkFolder, extract_chunk, fingerprint

logger = logging.getLogger(__name__)

__all__ = ["BatchResult", "ProgressEvent", "VideoPipeline", "VideoResult", "process_video", "process_videos"]

REFERENCE_FRAME_WH = (1920, 1080)  # frame size the memory plan reserves room for; larger frames run fewer at once
# The analyser's working set while it runs: under 3.2 KB per frame and lane of the linked track
# (tests/analysis/test_analysis_memory.py); lanes can outnumber the chunks' slots where people come
# and go (a person's span overlapping another's gap), hence 10 KB per frame and slot.
ANALYSIS_BYTES_PER_FRAME_SLOT = 10 * 1024


class VideoPipeline:
    """Runs videos through Dask extraction and Ray analysis, inside a memory budget,
    then the LLM step (teachers, dataset, training) as the command line does.

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
        self.resources: ResourcePlan | None = None
        self.monitor: MemoryMonitor | None = None
        self.engines = Engines(self.config, self.stats)
        self._scheduler: Scheduler | None = None
        self._claimed: tuple[list[Input], list[VideoRun]] | None = None
        self._cancels: dict[str, str] = {}  # output name -> reason, set from any thread (``cancel``)
        self._cancels_lock = threading.Lock()

    # -- engines ---------------------------------------------------------------
    def start(self) -> VideoPipeline:
        config = self.config
        if self._claimed is not None and all(run.finished for run in self._claimed[1]):
            logger.info("every video is held by another run: the engines are not started")
            return self
        for note in check_ready(config):  # missing keys stop the run before any engine starts
            logger.warning("%s", note)
        self.stats.mark("engines_start")
        self.model = resolve_model(config.resolved_pose_model)
        plan = self._plan_resources()
        self.engines.start(plan)
        self.monitor = MemoryMonitor(plan.budget, plan.high_mark, plan.low_mark, roots=self.engines.local_pids).start()
        if not config.resolved_ray_address:  # the embedded Ray grows for seconds: count it before it is there
            self.monitor.expect(RAY_BASE_BYTES + ANALYZER_BYTES)
        self.stats.mark("monitor_started")
        self.engines.when_ray_ready(self._ray_started)
        return self

    def _ray_started(self, _) -> None:
        """Ray is up (or failed to start): its memory is measured from now on."""
        self.monitor.refresh_roots()
        self.monitor.expect(0)

    def _plan_resources(self) -> ResourcePlan:
        """The memory plan (ConfigError when the budget cannot hold the run), made once."""
        if self.resources is None:
            config = self.config
            self.resources = plan_resources(
                config.memory_limit,
                cores=os.cpu_count() or 1,
                workers=config.workers,
                analyzers=config.analyzers,
                largest_frame_wh=REFERENCE_FRAME_WH,
                render=config.render_video,
                embedded_ray=not config.resolved_ray_address,
                embedded_dask=not config.resolved_dask_address,
            )
            logger.debug("memory plan: %s", self.resources.to_dict())
        return self.resources

    @property
    def dask(self):
        return self.engines.dask

    @property
    def ray(self):
        """The RayEngine (waits for it to finish starting)."""
        return self.engines.ray

    def close(self, abort: bool = False) -> None:
        """Stop the engines this pipeline started. ``abort``: the run stops on an error or a
        signal, and the running tasks are not waited for."""
        if self._claimed is not None:
            self._release(self._claimed[1])
        self.stats.mark("engines_stop")
        if self.monitor is not None:
            self.monitor.stop()
        self.engines.close(abort)
        self.stats.mark("engines_stopped")

    def __enter__(self) -> VideoPipeline:
        try:
            return self.start()
        except BaseException:
            self.close(abort=True)
            raise

    def __exit__(self, exc_type, exc, traceback) -> None:
        self.close(abort=exc_type is not None)

    # -- processing ------------------------------------------------------------
    def estimator_settings(self) -> MediaPipeSettings:
        settings = MediaPipeSettings.from_preset(self.config.preset, self.model, self.config.resolved_num_poses)
        if not storage.is_local(self.config.output_dir):
            # Workers on machines that share no file system with this one read the model where the outputs go.
            shared = shared_copy(self.model, storage.join(self.config.output_dir, WORK_FOLDER, "models"))
            settings = replace(settings, model_path=shared)
        return settings

    def claim(self, paths: Iterable[str | Path]) -> list[VideoRun]:
        """Take the lock of every video's work folder, without waiting: a video
        another run holds is left to it (its result says which run). ``process``
        claims by itself; claiming first (as the command line does) lets a run
        whose every video is held finish without starting the engines."""
        for folder in self.config.output_folders:
            storage.ensure_writable(folder)
        self._plan_resources()  # a budget that cannot hold the run is refused before any lock is taken
        paths = [as_input(p) for p in paths]
        runs = self._claim_runs(paths)
        self._claimed = (paths, runs)
        return runs

    def _claim_runs(self, paths: list[Input]) -> list[VideoRun]:
        names = output_names(paths)
        runs = [
            VideoRun(path, names[path], WorkFolder.for_video(self.config.output_dir, names[path])) for path in paths
        ]
        for run in runs:
            owner = run.work.lock.try_acquire()
            if owner is not None:
                run.result.held_by = owner.describe()
                run.result.error = f"another run ({owner.describe()}) is processing it"
                self._advance(run, Stage.HELD)
        return runs

    def _release(self, runs: list[VideoRun]) -> None:
        for run in runs:
            run.work.lock.release()

    def process(self, paths: Iterable[str | Path]) -> BatchResult:
        """Every video, then the LLM step on those that wrote examples."""
        t0 = time.perf_counter()
        paths = [as_input(p) for p in paths]
        claimed = self._claimed is not None and self._claimed[0] == paths
        runs = self._claimed[1] if claimed else self.claim(paths)
        try:
            self._process([run for run in runs if not run.finished])
        finally:
            self._release(runs)
            self._claimed = None
        batch = BatchResult(videos=[run.result for run in runs], elapsed_s=time.perf_counter() - t0)
        batch.memory = self.monitor.report() if self.monitor is not None else {}
        finished = [
            VideoState(r.name, "ok" if r.success else "failed", r.to_dict(), r.video)
            for r in batch.videos
            if r.held_by is None
        ]
        batch.summary_csv = write_summary_csv(self.config.output_dir, finished)
        if self.config.llm_data_dir is not None:
            done = [r.name for r in batch.videos if r.success and "llm_examples" in r.outputs]
            batch.llm = run_llm_stage(done, self.config)
            self.stats.mark("llm_done")
        return batch

    def _process(self, runs: list[VideoRun]) -> None:
        """The videos this run holds: probe, plan, and run them to the end."""
        if not runs:
            return
        self._begin()
        self._admit(runs)
        self._run([run for run in runs if not run.finished])

    def _begin(self) -> None:
        """The scheduler, the estimator's settings and the writers, for the videos to come."""
        if self.dask is None:
            raise RuntimeError("VideoPipeline.process() before start() (use it as a context manager)")
        plan = self.resources
        self._scheduler = Scheduler(self.monitor, plan.workers, plan.task_reserve, plan.budget)
        self._settings = self.estimator_settings()
        self._writers = REGISTRY.enabled(self.config)
        self._disk = DiskCheck()

    def _admit(self, runs: list[VideoRun]) -> None:
        """Probe and plan the claimed videos; their chunks join the scheduler's queue."""
        runs = [run for run in runs if not run.finished]
        for run in runs:
            try:
                run.result.info = probe_video(run.location)
            except (VideoError, OSError) as exc:
                self._fail(run, one_line_reason(exc))
        self.stats.mark("videos_probed")
        batch_frames = sum(run.result.info.frame_count for run in runs if not run.finished)
        for run in runs:
            if not run.finished:
                try:
                    self._prepare(run, batch_frames)
                except (VideoError, OutputError, OSError) as exc:
                    self._fail(run, one_line_reason(exc))
        self.stats.mark("videos_planned")

    # -- a stream of videos (the job service) -------------------------------------------
    def stream(
        self,
        take: Callable[[], list[Input]],
        finished: Callable[[VideoResult], None],
        stop: threading.Event,
        idle_s: float = 0.5,
    ) -> None:
        """Process videos as ``take`` hands them over, until ``stop`` is set: each is
        claimed, probed, planned and run next to those already in flight, inside the one
        memory budget, and ``finished`` gets its result when it ends (its lock released).
        Videos still in flight at ``stop`` are left as they are: their work folders keep
        the finished chunks, and a later run resumes them."""
        for folder in self.config.output_folders:
            storage.ensure_writable(folder)
        self._begin()
        live: list[VideoRun] = []
        try:
            while not stop.is_set():
                new = [as_input(p) for p in take()]
                if new:
                    runs = self._claim_runs(new)
                    live += runs
                    self._admit(runs)
                self._apply_cancels(live)
                if any(not run.finished for run in live):
                    self._step()
                else:
                    stop.wait(idle_s)
                for run in [run for run in live if run.finished]:
                    live.remove(run)
                    run.work.lock.release()
                    finished(run.result)
        finally:
            self._release(live)

    def cancel(self, name: str, reason: str = "cancelled") -> None:
        """Stop the video with output name ``name`` (from any thread): it fails with
        ``reason``, its queued work is dropped and its running tasks are cancelled."""
        with self._cancels_lock:
            self._cancels[name] = reason

    def _apply_cancels(self, runs: list[VideoRun]) -> None:
        with self._cancels_lock:
            if not self._cancels:
                return
            cancels, self._cancels = self._cancels, {}
        for run in runs:
            if run.result.name in cancels:
                self._fail(run, cancels[run.result.name])

    # -- planning and resuming ---------------------------------------------------
    def _prepare(self, run: VideoRun, batch_frames: int) -> None:
        """Plan a probed video, check disk space, and find what an earlier run finished."""
        info, config = run.result.info, self.config
        # A video on object storage: the workers read its frame table from the work folder, not the whole video.
        table_at = None if storage.is_local(run.source) else run.work.frame_table_path
        run.plan = plan = plan_video(
            run.source, run.result.name, info, config, self._settings, self.model.sha256,
            self.dask.worker_count(), batch_frames, table_at,
        )  # fmt: skip
        run.result.chunks = len(plan.specs)
        source = fingerprint(run.source)
        done = None if config.force else run.work.completed(source, plan.output_key)
        if done is not None:
            missing = [w for w in self._writers if not storage.exists(w.location(config, run.result.name))]
            if not missing:
                self._skip(run, done)
                return
            if self._redo_missing(run, done, missing, source):
                return
        writers = [w for w in self._writers if run.only is None or w.name in run.only]
        work = (
            "work files",
            config.output_dir,
            info.frame_count * config.resolved_num_poses * WORK_BYTES_PER_FRAME_SLOT,
        )
        needs = [work] + [(n.what, n.folder, n.nbytes) for w in writers if (n := w.disk_need(config, info))]
        self._disk.reserve(needs)
        run.work.open(source, plan.extract_key, force=config.force)
        if table_at is not None:
            save_frame_table(frame_table(run.source), table_at)
        run.records = run.work.finished_chunks({spec.index: spec.start for spec in plan.specs})
        run.result.chunks_reused = len(run.records)
        if run.records:
            logger.info(
                "%s: %d of %d chunks done in an earlier run", run.result.video, len(run.records), len(plan.specs)
            )
        self._advance(run, Stage.PLANNED)
        reused = run.records
        self._emit_chunks(
            run,
            [
                _chunk_event(spec, "completed", reused[spec.index])
                if spec.index in reused
                else _chunk_event(spec, "queued")
                for spec in plan.specs
            ],
        )
        for spec in plan.specs:
            if spec.index not in run.records:
                self._scheduler.add(self._extract_work(run, spec))
        if run.all_chunks_done:
            self._chunks_complete(run)

    def _redo_missing(self, run: VideoRun, done: dict, missing: list[OutputWriter], source: dict) -> bool:
        """A video complete from an earlier run with the same settings, but some
        outputs are gone: only their writers will run. From the kept analysis when
        there is one (True: their tasks are queued now); else (False) the analysis
        is redone from the chunks, which must be those the other outputs came from;
        when they are not, every output is redone (``run.only`` stays None)."""
        config, labels = self.config, ", ".join(w.label for w in missing)
        if not run.work.has_analysis and not run.work.same_chunks(source, run.plan.extract_key):
            logger.info("%s: the %s is missing and the chunks changed; redoing every output", run.result.video, labels)
            return False
        run.recorded, run.only = done, {w.name for w in missing}
        logger.info("%s: complete from an earlier run but for the %s; writing only that", run.result.video, labels)
        if not run.work.has_analysis:
            return False
        info = run.result.info
        self._disk.reserve([(n.what, n.folder, n.nbytes) for w in missing if (n := w.disk_need(config, info))])
        run.analysis_kept = True
        run.summary = done["summary"]
        run.result.chunks_reused = len(run.plan.specs)
        self._advance(run, Stage.PLANNED)
        self._start_outputs(run)
        return True

    def _skip(self, run: VideoRun, done: dict) -> None:
        """A video finished by an earlier run with the same input and settings."""
        recorded = VideoResult.from_dict(done)
        recorded.skipped = True
        recorded.video = run.result.video
        run.result = recorded
        self._advance(run, Stage.SKIPPED)

    # -- the event loop ---------------------------------------------------------------
    def _run(self, runs: list[VideoRun]) -> None:
        while any(not run.finished for run in runs):
            self._step()

    def _step(self) -> None:
        scheduler = self._scheduler
        for stalled in scheduler.pump():
            self._on_stalled(stalled)
        done = scheduler.next_done(timeout=0.1)
        if done is not None and not done.work.group.finished:
            done.work.tag(done)
        self.engines.check()  # an engine that died ends the run (ClusterError), not just its videos

    def _on_stalled(self, stalled: Stalled) -> None:
        self._fail(
            stalled.work.group,
            f"memory budget exceeded: the run uses {stalled.in_use / MiB:.0f} MiB at rest and {stalled.work.what} "
            f"needs about {stalled.work.weight / MiB:.0f} MiB more; the budget is {stalled.budget / MiB:.0f} MiB "
            "(raise --memory_limit or use fewer --workers)",
        )

    def _extract_work(self, run: VideoRun, spec) -> Work:
        info = run.result.info
        path = storage.absolute(run.work.chunk_path(spec.index))

        def start():
            future = self.dask.submit(
                extract_chunk, spec, self._settings, path, label=f"extract-{run.result.name}-{spec.index}",
                retries=self.config.chunk_retries,
            )  # fmt: skip
            self.stats.mark("first_chunk_submitted")
            self._emit_chunks(run, [_chunk_event(spec, "processing")])
            return future

        weight = kind_bytes("extract", info.width, info.height)
        what = f"one extract task for {info.width}x{info.height} frames"
        return Work(weight, start, run, what, tag=lambda done: self._on_chunk(run, spec, done))

    def _on_chunk(self, run: VideoRun, spec, done: Done) -> None:
        try:
            record: ChunkRecord = done.future.result()
        except Exception as exc:  # noqa: BLE001 - a task's error travels back as its own type
            reason = self._task_error(exc, f"chunk {spec.index} (frames {spec.start}-{spec.end - 1})")
            self._emit_chunks(run, [_chunk_event(spec, "failed", error=reason)])
            self._fail(run, reason)
            return
        run.records[spec.index] = record
        self._emit_chunks(run, [_chunk_event(spec, "completed", record)])
        where = self.dask.worker_of(done.future)
        self.stats.chunk(
            ChunkTiming(
                run.result.name, spec.index, record.frames, record.worker, record.started, record.finished, where
            )
        )
        if run.stage is Stage.PLANNED:
            run.advance(Stage.EXTRACT)
        self._emit(run, Stage.EXTRACT)
        if run.all_chunks_done:
            self._chunks_complete(run)

    def _chunks_complete(self, run: VideoRun) -> None:
        """Every chunk is on disk: check the frames are all there and send the track to Ray."""
        for spec in run.plan.specs:
            record = run.records[spec.index]
            if record.frames != spec.frame_count:
                self._fail(run, f"chunk {spec.index} holds {record.frames} frames, expected {spec.frame_count}")
                return
        # The analysis holds the whole track while it runs: it is admitted like a task.
        self._scheduler.add_first([self._analysis_work(run)])

    def _analysis_work(self, run: VideoRun) -> Work:
        """The video's chunk records go to a Ray actor (once Ray is up); the summary comes back.
        A track that is complete before the embedded Ray has started, and small enough for a
        Dask worker, is analysed there by the same code instead of waiting (a short clip's
        critical path). A Ray cluster the user named is always used, and waited for: its
        failure to answer ends the run (exit 3) instead of going unnoticed."""
        info = run.result.info
        meta = TrackMeta(
            width=info.width, height=info.height, fps=info.fps, heights_m=self.config.heights_for(run.source)
        )
        records = [run.records[spec.index] for spec in run.plan.specs]
        folder = storage.absolute(run.work.analysis_folder)
        slots = max(record.slots for record in records)
        weight = run.frames_done * slots * ANALYSIS_BYTES_PER_FRAME_SLOT

        def start():
            self._advance(run, Stage.ANALYZE)
            embedded_ray = not self.config.resolved_ray_address
            if embedded_ray and not self.engines.ray_ready and weight <= self._plan_resources().worker_limit // 2:
                self.stats.video_mark(run.result.name, "analysis_on_dask")
                params = self.config.resolved_analysis
                label = f"analyze-{run.result.name}"
                return self.dask.submit(analyze_stored_task, records, meta, folder, params, label=label)
            outcome: Future = Future()

            def send(ray_started: Future) -> None:
                try:
                    analysed = ray_started.result().analyze_stored(records, meta, folder)
                    analysed.add_done_callback(lambda f: _settle(outcome, f))
                except Exception as exc:  # noqa: BLE001 - Ray did not start: this video's failure
                    _settle(outcome, error=exc)

            self.engines.when_ray_ready(send)
            return outcome

        what = f"the analysis of {run.frames_done} frames"
        return Work(weight, start, run, what, tag=lambda done: self._on_analysis(run, done))

    def _on_analysis(self, run: VideoRun, done: Done) -> None:
        try:
            run.summary = done.future.result()
            self._start_outputs(run)
        except (PipelineError, OSError) as exc:
            self._fail(run, one_line_reason(exc))
        except Exception as exc:  # noqa: BLE001 - an actor's error arrives wrapped by Ray
            self._fail(run, f"analysis failed: {one_line_reason(exc)}")

    # -- outputs ---------------------------------------------------------------------
    def _start_outputs(self, run: VideoRun) -> None:
        """Every registered writer's tasks, on the Dask workers. Tasks that hold
        frames go to the front of the queue: finishing a video comes first."""
        info, plan = run.result.info, run.plan
        header = {"video": info.to_dict(), "model": self.model.to_dict(), "settings": self._settings_block(run)}
        video = VideoOutputs(
            name=run.result.name,
            source=run.source,
            info=info,
            config=self.config,
            store=storage.absolute(run.work.analysis_folder),
            frames=run.summary["frames"],
            chunk_starts=plan.chunk_starts,
            header=header,
            frame_table_at=plan.specs[0].frame_table_at,
            cores_per_task=self._cores_per_task(),
        )
        self._advance(run, Stage.RENDER)
        works: list[Work] = []
        for writer in self._writers:
            if run.only is not None and writer.name not in run.only:
                continue
            run.pending_outputs.add(writer.name)
            if writer.only_complete:
                run.final_outputs += self._writer_works(run, writer, video)
            else:
                works += self._writer_works(run, writer, video)
        self._scheduler.add_first(works)
        self._start_final_outputs(run)

    def _cores_per_task(self) -> int:
        """The cores each task of the embedded cluster has (its workers run one task each); 1 when attached."""
        if self.config.resolved_dask_address:
            return 1
        return max(1, (os.cpu_count() or 1) // max(1, self._plan_resources().workers))

    def _start_final_outputs(self, run: VideoRun) -> None:
        """Once only the ``only_complete`` outputs are missing, start them."""
        final = {w.name for w in self._writers if w.only_complete}
        if run.final_outputs and run.pending_outputs <= final:
            works, run.final_outputs = run.final_outputs, []
            self._scheduler.add_first(works)

    def _writer_works(self, run: VideoRun, writer: OutputWriter, video: VideoOutputs) -> list[Work]:
        """The writer's tasks as scheduler work. Only the last says whether the output
        was written; an earlier one's failure reaches it through its inputs."""
        output_plan = writer.plan(video)
        run.scratch += output_plan.scratch
        info, location = run.result.info, writer.location(self.config, run.result.name)

        def written(done: Done) -> None:
            self._on_output(run, writer, location, done)

        works: list[Work] = []
        for i, task in enumerate(output_plan.tasks):
            after = tuple(works[j] for j in task.after)
            weight = kind_bytes(task.memory, info.width, info.height) if task.memory else None
            what = f"one {task.memory} task for {info.width}x{info.height} frames"
            tag = written if i == len(output_plan.tasks) - 1 else _ignore
            works.append(Work(weight, partial(self._submit_task, task, after), run, what, tag, after))
        return works

    def _submit_task(self, task: OutputTask, after: tuple[Work, ...]):
        # A task fed by others is not retried: its inputs are their futures.
        retries = 0 if after else self.config.chunk_retries
        return self.dask.submit(task.fn, *task.args, *(w.future for w in after), label=task.label, retries=retries)

    def _on_output(self, run: VideoRun, writer: OutputWriter, location: str, done: Done) -> None:
        try:
            done.future.result()
        except Exception as exc:  # noqa: BLE001 - a task's error travels back as its own type
            self._fail(run, f"{writer.label}: {self._task_error(exc, writer.label)}")
            return
        run.result.outputs[writer.name] = location
        self.stats.video_mark(run.result.name, f"{writer.name}_written")  # where the outputs' time goes
        run.pending_outputs.discard(writer.name)
        if not run.pending_outputs:
            self._succeed(run)
        else:
            self._start_final_outputs(run)

    def _succeed(self, run: VideoRun) -> None:
        result, summary = run.result, run.summary
        result.success = True
        result.frames = summary["frames"]
        result.frames_analysed = summary["frames_analysed"]
        result.frames_with_person = summary["frames_with_person"]
        result.persons = summary["persons_found"]
        result.summary = summary
        result.elapsed_s = time.perf_counter() - run.started
        if run.recorded is not None:  # the outputs that were kept, and those written now
            result.rewritten = sorted(result.outputs)
            result.outputs = run.recorded["outputs"] | result.outputs
        result.outputs = dict(sorted(result.outputs.items()))
        try:
            run.work.mark_complete(run.plan.output_key, result.to_dict())  # the stored analysis is kept
        except OSError as exc:
            self._fail(run, f"cannot record the finished video in {run.work.root}: {one_line_reason(exc)}")
            return
        self._advance(run, Stage.DONE)

    def _task_error(self, exc: BaseException, what: str) -> str:
        return self.dask.workers_lost(exc, what) or one_line_reason(exc)

    def _settings_block(self, run: VideoRun) -> dict:
        heights = self.config.heights_for(run.source)  # this video's (person -1: every other person)
        person_height = {("*" if person < 0 else str(person)): metres for person, metres in heights} or None
        return self.config.to_dict() | {"batch_size": run.plan.batch_size, "person_height_m": person_height}

    def _fail(self, run: VideoRun, reason: str) -> None:
        if run.finished:
            return
        if self._scheduler is not None:
            self._scheduler.drop(run)
        for folder in run.scratch:
            storage.remove_tree(folder)
        try:
            if not run.analysis_kept:  # the analysis of a completed video stays for its other outputs
                run.work.drop_analysis()
        except OSError as exc:
            logger.warning("%s: could not remove the stored analysis: %s", run.result.video, one_line_reason(exc))
        for writer in self._writers:
            if writer.only_complete:
                self._remove_output(run, writer)
        run.result.success = False
        run.result.error = reason
        run.result.elapsed_s = time.perf_counter() - run.started
        self._record_failure(run)
        self._advance(run, Stage.FAILED)

    def _remove_output(self, run: VideoRun, writer: OutputWriter) -> None:
        """A failed video keeps none of the files of an ``only_complete`` output (this run's or an earlier one's)."""
        for location in writer.files(self.config, run.result.name):
            try:
                storage.remove(location)
            except OSError as exc:
                logger.warning("%s: could not remove %s: %s", run.result.video, location, one_line_reason(exc))
        run.result.outputs.pop(writer.name, None)

    def _record_failure(self, run: VideoRun) -> None:
        """The failure goes into the work folder's manifest: summary.csv is written from there."""
        try:
            run.work.mark_failed(run.result.to_dict())
        except OSError as exc:
            logger.warning(
                "%s: could not record the failure in %s: %s", run.result.video, run.work.root, one_line_reason(exc)
            )

    def _advance(self, run: VideoRun, stage: Stage) -> None:
        run.advance(stage)
        if stage.final:  # its manifest says how it ended: another run may take it now
            run.work.lock.release()
        self._emit(run, stage)

    def _emit(self, run: VideoRun, stage: Stage) -> None:
        if stage is not Stage.EXTRACT:
            self.stats.video_mark(run.result.name, str(stage))
        if self._progress is None:
            return
        total = run.result.info.frame_count if run.result.info else 0
        done = total if stage is Stage.SKIPPED or run.analysis_kept else run.frames_done
        self._progress(ProgressEvent(run.result.video, str(stage), done, total, run.result.name))

    def _emit_chunks(self, run: VideoRun, chunks: list[ChunkEvent]) -> None:
        """Chunks whose status changed (queued, processing, completed, failed), for the progress callback."""
        if self._progress is None:
            return
        total = run.result.info.frame_count if run.result.info else 0
        event = ProgressEvent(run.result.video, str(run.stage), run.frames_done, total, run.result.name, tuple(chunks))
        self._progress(event)


def _chunk_event(spec, status: str, record: ChunkRecord | None = None, error: str = "") -> ChunkEvent:
    """A chunk's status; with its record (a finished chunk) its artifact, worker and time."""
    if record is None:
        return ChunkEvent(spec.index, spec.start, spec.end, status, error=error)
    seconds = max(0.0, record.finished - record.started)
    return ChunkEvent(
        spec.index, spec.start, spec.end, status, record.path, record.worker, round(seconds, 3), record.reused
    )


def _ignore(done: Done) -> None:
    pass


def _settle(outcome: Future, finished: Future | None = None, error: BaseException | None = None) -> None:
    """Pass ``finished``'s result or ``error`` on to ``outcome``; a dropped video's
    ``outcome`` was cancelled, and its late result is discarded."""
    error = error if finished is None else finished.exception()
    try:
        if error is None:
            outcome.set_result(finished.result())
        else:
            outcome.set_exception(error)
    except InvalidStateError:
        pass


def process_videos(paths: Iterable[str | Path], config: PipelineConfig | None = None, **overrides) -> BatchResult:
    """Process several videos with one set of engines, then the LLM step."""
    config = (config or PipelineConfig()).with_overrides(**overrides)
    paths = list(paths)
    pipeline = VideoPipeline(config)
    pipeline.claim(paths)  # videos another run holds are skipped before the engines start
    with pipeline:
        return pipeline.process(paths)


def process_video(path: str | Path, config: PipelineConfig | None = None, **overrides) -> VideoResult:
    """Process one video; returns its VideoResult (check ``success``)."""
    return process_videos([path], config, **overrides).videos[0]
