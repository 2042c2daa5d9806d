"""The two engines of a run: Dask for the tasks on frames (pose extraction,
rendering, outputs) and Ray for the analyzer actors.

:class:`Engines` starts both at the same time (Dask at once, Ray in the
background, since it is needed only when the first track is complete), serves
every video of a run, and stops only what it started.
"""

from __future__ import annotations

import contextlib
from concurrent.futures import Future, ThreadPoolExecutor

from pipeline.config import PipelineConfig
from pipeline.errors import PipelineError
from pipeline.memory import ResourcePlan
from pipeline.stats import RunStats


class Engines:
    def __init__(self, config: PipelineConfig, stats: RunStats) -> None:
        self.config = config
        self.stats = stats
        self.dask = None  # DaskEngine
        self._ray_future: Future | None = None
        self._ray_thread: ThreadPoolExecutor | None = None

    def start(self, plan: ResourcePlan) -> None:
        """Ray starts in the background; Dask is up when this returns (ClusterError otherwise)."""
        from pipeline.engines.dask_engine import DaskEngine

        self._ray_thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="ray-start")
        self._ray_future = self._ray_thread.submit(self._start_ray, plan)
        self.stats.mark("dask_start")
        self.dask = DaskEngine(self.config.resolved_dask_address, plan.workers, plan.worker_limit)
        self.stats.mark("dask_ready")

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

    def when_ray_ready(self, callback) -> None:
        """``callback(future)`` once Ray has started or failed to (at once if it has)."""
        self._ray_future.add_done_callback(callback)

    @property
    def ray(self):
        """The RayEngine (waits for it to finish starting)."""
        return self._ray_future.result() if self._ray_future else None

    def local_pids(self) -> list[int]:
        """Processes of attached engines running on this machine (embedded ones are the driver's descendants)."""
        pids = []
        if self.dask is not None and not self.dask.embedded:
            pids += self.dask.local_worker_pids()
        ray = self._ray_future
        if ray is not None and ray.done() and ray.exception() is None and not ray.result().embedded:
            pids += ray.result().local_actor_pids()
        return pids

    def close(self) -> None:
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

    def _close_ray(self, started: Future) -> None:
        # A Ray that never started was reported where it was needed.
        with contextlib.suppress(PipelineError):
            started.result().close()
        self.stats.mark("ray_stopped")
