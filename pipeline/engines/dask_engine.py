"""Dask side: an embedded LocalCluster on 127.0.0.1 or an existing scheduler, and
the tasks that run on its workers: pose extraction, rendering of the annotated
video's segments and their join, the report, the pose JSON and the LLM examples.

Workers read the input videos and write the outputs by path, so with an
attached cluster the input and output folders must be visible to the workers
at the same paths (a shared file system)."""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
import uuid
from dataclasses import replace

import dask

from pipeline.errors import ClusterError
from pipeline.jobs import AnalysisStore, ChunkRecord, save_chunk
from pipeline.llm.build import write_video_examples
from pipeline.outputs.annotate import Annotator
from pipeline.outputs.pose_json import write_pose_json
from pipeline.outputs.render import RenderSpec, join_rendered, render_segment
from pipeline.outputs.report import write_report
from pipeline.pose.estimator import EstimatorSettings, PoseEstimator
from pipeline.video.plan import ChunkSpec

logger = logging.getLogger(__name__)

_CLUSTER_CONFIG = {
    "distributed.worker.memory.target": False,
    "distributed.worker.memory.spill": False,
    "distributed.worker.memory.pause": False,
    "distributed.worker.memory.terminate": 0.95,
    # Dask's default MALLOC_TRIM_THRESHOLD_=65536 switches off glibc's adaptive mmap threshold:
    # every decoded frame (5 MB at 1768x994) is then mmapped, page-faulted and unmapped, which
    # made pose extraction 30 % slower (docs/benchmarks.md). glibc's adaptive default reuses them.
    "distributed.nanny.pre-spawn-environ.MALLOC_TRIM_THRESHOLD_": None,
    # Book-keeping that costs CPU the pose tasks need (docs/benchmarks.md): the workers'
    # statistical profiler (a stack sample every 10 ms), event-loop health checks every
    # 20 ms and system metrics every 500 ms in every process, memory checks every 100 ms.
    "distributed.worker.profile.enabled": False,
    "distributed.admin.tick.interval": "1s",
    "distributed.admin.system-monitor.interval": "2s",
    "distributed.worker.memory.monitor-interval": "500ms",
}

# One PoseEstimator per worker process, kept for the process's life.
_ESTIMATORS: dict[EstimatorSettings, PoseEstimator] = {}
_ESTIMATORS_LOCK = threading.Lock()


def worker_estimator(settings: EstimatorSettings) -> PoseEstimator:
    with _ESTIMATORS_LOCK:
        estimator = _ESTIMATORS.get(settings)
        if estimator is None:
            estimator = _ESTIMATORS[settings] = PoseEstimator(settings)
            logger.debug("pid %d: pose estimator ready (%s)", os.getpid(), settings.model_path)
        return estimator


def extract_chunk(spec: ChunkSpec, settings: EstimatorSettings, artifact: str) -> ChunkRecord:
    """Dask task: decode ``spec``'s frames, track them, write the landmarks to
    ``artifact`` (atomically) and return the chunk's small record. The
    landmarks never travel back to the driver."""
    started = time.time()
    record = save_chunk(artifact, spec.index, worker_estimator(settings)(spec))
    return replace(record, worker=f"{socket.gethostname()}:{os.getpid()}", started=started, finished=time.time())


def render_task(spec: RenderSpec, store: str, annotator: Annotator) -> int:
    """Dask task: one segment of the annotated video; returns its frame count."""
    return render_segment(spec, AnalysisStore(store).read(spec.start, spec.stop), annotator)


def join_task(specs: list[RenderSpec], out_path: str, *written: int) -> str:
    """Dask task: join the segments (runs once every segment is done)."""
    return join_rendered(specs, out_path, list(written))


def report_task(path: str, video: str, info, store: str, settings: dict) -> str:
    """Dask task: the HTML report."""
    return str(write_report(path, video, info, AnalysisStore(store), settings))


def pose_json_task(path: str, header: dict, store: str) -> str:
    """Dask task: the pose JSON, streamed from the stored analysis block by block."""
    return str(write_pose_json(path, header, AnalysisStore(store)))


def llm_examples_task(folder: str, name: str, fps: float, sport: str, store: str) -> dict:
    """Dask task: the video's LLM training examples, from the stored analysis."""
    return write_video_examples(AnalysisStore(store), folder, name, fps, sport)


class DaskEngine:
    """Owns a Dask client; closes only the cluster it started itself."""

    def __init__(self, address: str | None, workers: int, worker_memory_bytes: int | None = None) -> None:
        from dask.distributed import Client, LocalCluster

        self.address = address
        self._cluster = None
        try:
            if address:
                self.client = Client(address, timeout="20s")
            else:
                # The tasks keep no data in the workers (results go to disk), so Dask's
                # spilling and pausing have nothing to act on; a paused worker whose
                # memory stays high would stop the run. The MemoryMonitor admits tasks;
                # the per-worker limit stays as the last guard (the nanny restarts a
                # worker above 95 % of it, and its task is rerun elsewhere).
                with dask.config.set(_CLUSTER_CONFIG):
                    self._cluster = LocalCluster(
                        n_workers=workers,
                        threads_per_worker=1,
                        processes=True,
                        host="127.0.0.1",
                        dashboard_address=None,
                        worker_dashboard_address=None,
                        memory_limit=worker_memory_bytes or "auto",
                        silence_logs=logging.WARNING,
                    )
                self.client = Client(self._cluster)
        except (OSError, TimeoutError, ValueError) as exc:
            self.close()
            where = f"the Dask scheduler at {address}" if address else "an embedded Dask cluster"
            raise ClusterError(f"could not connect to {where}: {exc}") from exc

    @property
    def embedded(self) -> bool:
        return self._cluster is not None

    def worker_count(self) -> int:
        return max(1, len(self.client.scheduler_info(n_workers=-1).get("workers", {})))

    def worker_pids(self) -> list[int]:
        return sorted(self.client.run(os.getpid).values())

    def local_worker_pids(self) -> list[int]:
        """PIDs of the workers that run on this machine (an attached cluster may have others)."""
        here = socket.gethostname()
        found = self.client.run(lambda: (socket.gethostname(), os.getpid()))
        return sorted(pid for host, pid in found.values() if host == here)

    def submit_extract(self, spec: ChunkSpec, settings: EstimatorSettings, artifact: str, retries: int):
        key = f"extract-{os.path.basename(spec.video_path)}-{spec.index}-{uuid.uuid4().hex[:8]}"
        return self.client.submit(extract_chunk, spec, settings, artifact, key=key, retries=retries, pure=False)

    def submit_render_segment(self, spec: RenderSpec, store: str, annotator: Annotator, retries: int):
        key = f"render-{os.path.basename(spec.video)}-{spec.index}-{uuid.uuid4().hex[:8]}"
        return self.client.submit(render_task, spec, store, annotator, key=key, retries=retries, pure=False)

    def submit_join(self, specs: list[RenderSpec], out_path: str, segments: list):
        key = f"join-{os.path.basename(out_path)}-{uuid.uuid4().hex[:8]}"
        return self.client.submit(join_task, specs, out_path, *segments, key=key, pure=False)

    def submit_report(self, path: str, video: str, info, store: str, settings: dict, retries: int):
        key = f"report-{os.path.basename(path)}-{uuid.uuid4().hex[:8]}"
        return self.client.submit(report_task, path, video, info, store, settings, key=key, retries=retries, pure=False)

    def submit_pose_json(self, path: str, header: dict, store: str, retries: int):
        key = f"pose-json-{os.path.basename(path)}-{uuid.uuid4().hex[:8]}"
        return self.client.submit(pose_json_task, path, header, store, key=key, retries=retries, pure=False)

    def submit_llm_examples(self, folder: str, name: str, fps: float, sport: str, store: str, retries: int):
        key = f"llm-examples-{name}-{uuid.uuid4().hex[:8]}"
        return self.client.submit(
            llm_examples_task, folder, name, fps, sport, store, key=key, retries=retries, pure=False
        )

    def close(self) -> None:
        client = getattr(self, "client", None)
        if client is not None:
            client.close()
        if self._cluster is not None:
            self._cluster.close()
            self._cluster = None
