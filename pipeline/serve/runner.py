"""The service's one pipeline: a thread that claims videos from the job database and
streams them through a single VideoPipeline, so every job shares the engines and the
memory budget, and records their progress, chunk by chunk, back in the database."""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import asdict
from pathlib import Path

from sqlalchemy.exc import SQLAlchemyError

from pipeline import storage
from pipeline.config import PipelineConfig
from pipeline.errors import PipelineError, one_line_reason
from pipeline.orchestrator import VideoPipeline
from pipeline.outputs.registry import REGISTRY
from pipeline.results import ProgressEvent, VideoResult
from pipeline.serve.db import CANCELLED, COMPLETED, FAILED, JobStore

logger = logging.getLogger(__name__)

RESTART_PAUSE_S = 5.0  # before the engines are started again after they failed
STOP_TIMEOUT_S = 60.0  # the runner's thread is waited for this long at shutdown


class JobRunner:
    """Claims up to ``max_live`` videos at a time (a lease of ``lease_s``, renewed every
    ``lease_s / 3``), runs them in one VideoPipeline and writes what happens to ``store``."""

    def __init__(self, store: JobStore, config: PipelineConfig, owner: str, max_live: int = 24,
                 lease_s: float = 60.0, poll_s: float = 0.5) -> None:  # fmt: skip
        self.store = store
        self.config = config
        self.owner = owner
        self.max_live = max_live
        self.lease_s = lease_s
        self.poll_s = poll_s
        self.engines = "starting"  # starting, ready, failed
        self.error: str | None = None
        self.memory: dict = {}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._pipeline: VideoPipeline | None = None
        self._live: dict[str, dict] = {}  # location -> video row, while in the pipeline
        self._by_name: dict[str, str] = {}  # output name -> video id
        self._next_poll = 0.0
        self._next_renew = 0.0

    def start(self) -> JobRunner:
        self._thread = threading.Thread(target=self._main, name="job-runner", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop claiming, leave the videos in flight to the next run (their finished chunks are
        kept) and stop the engines."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(STOP_TIMEOUT_S)
            if self._thread.is_alive():
                logger.warning("the job runner did not stop within %.0f s", STOP_TIMEOUT_S)

    # -- the thread -------------------------------------------------------------------------
    def _main(self) -> None:
        while not self._stop.is_set():
            pipeline = VideoPipeline(self.config, progress=self._progress)
            try:
                pipeline.start()
                self._pipeline = pipeline
                self.engines, self.error = "ready", None
                pipeline.stream(self._take, self._finished, self._stop, idle_s=self.poll_s)
            except PipelineError as exc:
                self.engines, self.error = "failed", one_line_reason(exc)
                logger.error("the engines stopped: %s; starting them again in %.0f s", self.error, RESTART_PAUSE_S)
            except Exception as exc:  # noqa: BLE001 - the service outlives any one failure of its pipeline
                self.engines, self.error = "failed", one_line_reason(exc)
                logger.exception("the pipeline stopped: %s; starting it again in %.0f s", self.error, RESTART_PAUSE_S)
            finally:
                self.memory_report()
                self._pipeline = None
                self._hand_back()
                pipeline.close(abort=True)  # the tasks in flight are not waited for: their videos resume later
            self._stop.wait(RESTART_PAUSE_S)

    def _hand_back(self) -> None:
        """The videos still in flight go back to the queue."""
        live, self._live = list(self._live.values()), {}
        self._by_name.clear()
        try:
            self.store.release(self.owner, [row["id"] for row in live])
        except Exception as exc:  # noqa: BLE001 - the database may be gone at shutdown; the leases then expire
            logger.warning("could not hand %d videos back to the queue: %s", len(live), one_line_reason(exc))

    def memory_report(self) -> dict:
        pipeline = self._pipeline
        if pipeline is not None and pipeline.monitor is not None:
            self.memory = pipeline.monitor.report()
        return self.memory

    def _take(self) -> list[str]:
        """New videos for the pipeline (at most every ``poll_s``); renews the leases and passes
        cancellations on. The database out of reach: nothing new now, tried again at the next poll."""
        now = time.monotonic()
        if now < self._next_poll:
            return []
        self._next_poll = now + self.poll_s
        try:
            return self._claim(now)
        except SQLAlchemyError as exc:
            logger.warning("the job database did not answer: %s", one_line_reason(exc))
            return []

    def _claim(self, now: float) -> list[str]:
        ids = [row["id"] for row in self._live.values()]
        if now >= self._next_renew:
            self.store.renew(self.owner, ids, self.lease_s)
            self._next_renew = now + self.lease_s / 3
        for video_id in self.store.cancelled_among(ids):
            row = next(r for r in self._live.values() if r["id"] == video_id)
            self._pipeline.cancel(row["name"], "cancelled")
        claimed = self.store.claim_videos(self.owner, self.max_live - len(self._live), self.lease_s)
        for row in claimed:
            self._live[row["location"]] = row
            self._by_name[row["name"]] = row["id"]
            logger.info("job %s: %s claimed (attempt %d)", row["job_id"], row["filename"], row["attempts"])
        return [row["location"] for row in claimed]

    def _progress(self, event: ProgressEvent) -> None:
        video_id = self._by_name.get(event.name)
        if video_id is None or event.stage in ("done", "failed", "skipped", "held"):
            return  # the end of a video is recorded with its result
        chunk_events = [asdict(chunk) for chunk in event.chunks]
        try:
            self.store.video_progress(
                self.owner, video_id, event.stage, event.frames_done, event.frames_total, chunk_events
            )
        except SQLAlchemyError as exc:  # the progress shown lags; the result is recorded at the end
            logger.warning("could not record the progress of %s: %s", event.name, one_line_reason(exc))

    def _finished(self, result: VideoResult) -> None:
        location = next((loc for loc, row in self._live.items() if row["name"] == result.name), None)
        if location is None:
            return
        row = self._live.pop(location)
        self._by_name.pop(result.name, None)
        if result.success:
            status, error = COMPLETED, None
        elif result.error == "cancelled":
            status, error = CANCELLED, "cancelled"
        else:
            status, error = FAILED, result.error or "failed"
        summary = {
            "frames": result.frames,
            "persons": result.persons,
            "chunks": result.chunks,
            "chunks_reused": result.chunks_reused,
            "elapsed_s": round(result.elapsed_s, 2),
        }
        files = downloads(self.config, result, Path(row["filename"]).stem) if result.success else []
        try:
            self.store.video_finished(self.owner, row["id"], status, error, files, summary)
        except SQLAlchemyError as exc:  # its lease runs out; the next claim finds it complete in its work folder
            logger.warning("could not record the end of %s: %s", row["filename"], one_line_reason(exc))
            return
        logger.info("job %s: %s %s%s", row["job_id"], row["filename"], status, f" ({error})" if error else "")


def downloads(config: PipelineConfig, result: VideoResult, stem: str) -> list[dict]:
    """Every file a finished video's outputs wrote, keyed for the download URL: the output's
    name for its main file, ``<output>-<n>`` for the others; a folder's files one by one.
    Each downloads under the uploaded file's ``stem`` (``jump_pose.json``)."""
    found: list[dict] = []
    for writer in REGISTRY.enabled(config):
        if writer.name not in result.outputs:
            continue
        paths: list[str] = []
        for location in (result.outputs[writer.name], *writer.files(config, result.name)):
            folder = Path(location)
            if folder.is_dir():
                paths += [str(p) for p in sorted(folder.rglob("*")) if p.is_file()]
            elif storage.exists(location):
                paths.append(str(location))
        for n, path in enumerate(dict.fromkeys(paths)):
            key = writer.name if n == 0 else f"{writer.name}-{n}"
            found.append(
                {
                    "key": key,
                    "output": writer.name,
                    "label": writer.label,
                    "filename": _download_name(path).replace(result.name, stem),
                    "path": path,
                }
            )
    return found


def _download_name(path: str) -> str:
    """A file's name for the download: a table's keeps its table's name (``frames_<video>.parquet``)."""
    file = Path(path)
    if file.parent.name.startswith("video="):
        return f"{file.parent.parent.name}_{file.name}"
    return file.name
