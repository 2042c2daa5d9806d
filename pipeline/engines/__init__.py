"""The two engines of a run: Dask for the tasks on frames (pose extraction,
rendering, outputs) and Ray for the analyzer actors.

:class:`Engines` checks the addresses of attached clusters first (``address.py``),
starts both engines at the same time (Dask at once, Ray in the background, since
it is needed only when the first track is complete), serves every video of a run,
and stops only what it started. While they run, :meth:`Engines.check` (called
by the orchestrator's loop, several times a second) raises a ClusterError when an
engine failed to start or died; a watchdog process (``watchdog.py``) ends the
embedded engines' processes if the driver itself is killed.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
from concurrent.futures import Future, ThreadPoolExecutor

from pipeline.config import PipelineConfig
from pipeline.engines.address import (
    DASK_DEFAULT_PORT,
    RAY_DEFAULT_PORT,
    check_dask_scheduler,
    check_reachable,
    parse_endpoint,
)
from pipeline.engines.watchdog import Watchdog
from pipeline.errors import ClusterError, PipelineError
from pipeline.memory import ResourcePlan
from pipeline.stats import RunStats

logger = logging.getLogger(__name__)


class Engines:
    def __init__(self, config: PipelineConfig, stats: RunStats) -> None:
        self.config = config
        self.stats = stats
        self.dask = None  # DaskEngine
        self._ray_future: Future | None = None
        self._ray_thread: ThreadPoolExecutor | None = None
        self._watchdog: Watchdog | None = None

    def start(self, plan: ResourcePlan) -> None:
        """The given addresses are checked first, then Ray starts in the background; Dask is
        up when this returns (ClusterError otherwise)."""
        from pipeline.engines.dask_engine import DaskEngine

        self.check_addresses()
        embedded = not self.config.resolved_dask_address or not self.config.resolved_ray_address
        if embedded and sys.platform.startswith("linux"):
            self._watchdog = Watchdog()
            logger.debug("watchdog process %d", self._watchdog.pid)
        self.stats.mark("dask_start")
        self.dask = DaskEngine(self.config.resolved_dask_address, plan.workers, plan.worker_limit)
        self.stats.mark("dask_ready")
        self._ray_thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="ray-start")
        self._ray_future = self._ray_thread.submit(self._start_ray, plan)

    def check_addresses(self) -> None:
        """ClusterError within seconds when an address the user gave cannot be reached."""
        dask_address, ray_address = self.config.resolved_dask_address, self.config.resolved_ray_address
        if dask_address and (endpoint := parse_endpoint(dask_address, DASK_DEFAULT_PORT)) is not None:
            check_reachable(endpoint, "the Dask scheduler")
            check_dask_scheduler(dask_address)
        if ray_address and (endpoint := parse_endpoint(ray_address, RAY_DEFAULT_PORT)) is not None:
            check_reachable(endpoint, "the Ray cluster")

    def check(self) -> None:
        """ClusterError when an engine failed to start or died since it started. Cheap (no
        request to a cluster): the process states of the embedded Ray, the Dask client's state."""
        problem = self._dask_problem() or self._ray_problem()
        if problem is not None:
            raise ClusterError(f"{problem}; the work done so far is kept: re-run the same command to resume")

    def _dask_problem(self) -> str | None:
        return self.dask.problem() if self.dask is not None else None

    def _ray_problem(self) -> str | None:
        started = self._ray_future
        if started is None or not started.done():
            return None
        error = started.exception()
        if error is None:
            return started.result().problem()
        return str(error) if isinstance(error, PipelineError) else f"Ray did not start: {type(error).__name__}: {error}"

    def _start_ray(self, plan: ResourcePlan):
        from pipeline.engines.ray_engine import RayEngine

        self.stats.mark("ray_start")
        if not self.config.resolved_ray_address:
            _lower_priority()
        engine = RayEngine(
            self.config.resolved_ray_address,
            plan.analyzers,
            self.config.resolved_analysis,
            object_store_bytes=plan.object_store,
        )
        self.stats.mark("ray_ready")
        return engine

    @property
    def ray_ready(self) -> bool:
        """Whether Ray has started (or failed to): a call to :attr:`ray` would not wait."""
        return self._ray_future is not None and self._ray_future.done()

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

    def close(self, abort: bool = False) -> None:
        """Stop what was started. ``abort``: the run stops on an error or a signal (the running
        Dask tasks are not waited for)."""
        ray_closed = None
        if self._ray_future is not None:
            # Both engines stop at the same time (each takes about a second).
            ray_closed = self._ray_thread.submit(self._close_ray, self._ray_future)
            self._ray_future = None
        if self.dask is not None:
            self.dask.close(abort)
            self.dask = None
            self.stats.mark("dask_stopped")
        if ray_closed is not None:
            ray_closed.result()
            self._ray_thread.shutdown()
        if self._watchdog is not None:
            self._watchdog.stop()
            self._watchdog = None

    def _close_ray(self, started: Future) -> None:
        # A Ray that never started was reported where it was needed.
        with contextlib.suppress(PipelineError):
            started.result().close()
        self.stats.mark("ray_stopped")


# The niceness of the embedded Ray's processes. Ray starts while the first chunks are extracted and its
# start takes several CPU-seconds (GCS, raylet, agents, the first analyzer actor); at this niceness it
# uses the cores the pose work leaves idle instead of slowing it (docs/benchmarks.md, "Short clips").
RAY_NICENESS = 10


def _lower_priority() -> None:
    """Lower the calling thread's priority; the processes it starts (Ray's) inherit it. Linux only
    (elsewhere the niceness is the whole process's, and the driver keeps its own)."""
    if not sys.platform.startswith("linux"):
        return
    import threading

    try:
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), RAY_NICENESS)
    except OSError as exc:
        logger.debug("cannot lower the priority of Ray's start: %s", exc)
