"""Dask side: an embedded LocalCluster on 127.0.0.1 or an existing scheduler, and
the pose extraction task that runs on its workers."""

from __future__ import annotations

import logging
import os
import threading
import uuid

from pipeline.errors import ClusterError
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

    def close(self) -> None:
        client = getattr(self, "client", None)
        if client is not None:
            client.close()
        if self._cluster is not None:
            self._cluster.close()
            self._cluster = None
