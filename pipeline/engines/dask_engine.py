"""Dask side: an embedded LocalCluster on 127.0.0.1 or an existing scheduler, and
the tasks that run on its workers: pose extraction, rendering of the annotated
video's segments and their join, and the report.

Workers read the input videos and write the outputs by path, so with an
attached cluster the input and output folders must be visible to the workers
at the same paths (a shared file system)."""

from __future__ import annotations

import logging
import os
import threading
import uuid

from pipeline.analysis.analyzer import Analysis
from pipeline.errors import ClusterError
from pipeline.outputs.annotate import Annotator
from pipeline.outputs.render import RenderSpec, join_rendered, render_segment
from pipeline.outputs.report import write_report
from pipeline.pose.estimator import EstimatorSettings, PoseEstimator
from pipeline.pose.types import PoseChunk
from pipeline.video.plan import ChunkSpec

logger = logging.getLogger(__name__)

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


def extract_chunk(spec: ChunkSpec, settings: EstimatorSettings) -> PoseChunk:
    """Dask task: decode ``spec``'s frames from the file and return their landmarks."""
    return worker_estimator(settings)(spec)


def render_task(spec: RenderSpec, view: Analysis, annotator: Annotator) -> int:
    """Dask task: one segment of the annotated video; returns its frame count."""
    return render_segment(spec, view, annotator)


def join_task(specs: list[RenderSpec], out_path: str, *written: int) -> str:
    """Dask task: join the segments (runs once every segment is done)."""
    return join_rendered(specs, out_path, list(written))


def report_task(path: str, video: str, info, analysis: Analysis, settings: dict) -> str:
    """Dask task: the HTML report."""
    return str(write_report(path, video, info, analysis, settings))


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

    def submit_extract(self, spec: ChunkSpec, settings: EstimatorSettings, retries: int):
        key = f"extract-{os.path.basename(spec.video_path)}-{spec.index}-{uuid.uuid4().hex[:8]}"
        return self.client.submit(extract_chunk, spec, settings, key=key, retries=retries, pure=False)

    def submit_render(self, specs: list[RenderSpec], analysis: Analysis, annotator: Annotator, out_path: str):
        """Render every segment in parallel; the returned future yields the joined video's path."""
        tag = uuid.uuid4().hex[:8]
        segments = [
            self.client.submit(
                render_task,
                spec,
                analysis.frames(spec.start, spec.stop),
                annotator,
                key=f"render-{spec.index}-{tag}",
                pure=False,
            )
            for spec in specs
        ]
        return self.client.submit(join_task, specs, out_path, *segments, key=f"join-{tag}", pure=False)

    def submit_report(self, path: str, video: str, info, analysis: Analysis, settings: dict):
        return self.client.submit(
            report_task, path, video, info, analysis, settings, key=f"report-{uuid.uuid4().hex[:8]}", pure=False
        )

    def close(self) -> None:
        client = getattr(self, "client", None)
        if client is not None:
            client.close()
        if self._cluster is not None:
            self._cluster.close()
            self._cluster = None
