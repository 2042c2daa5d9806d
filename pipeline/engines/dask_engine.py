"""Dask side: an embedded LocalCluster on 127.0.0.1 or an existing scheduler,
and one generic submit. The tasks themselves (pose extraction, rendering, the
outputs) are plain functions of the modules that own them; this module knows
none of them.

Workers read the input videos and write the outputs by path, so with an
attached cluster the input and output folders must be visible to the workers
at the same paths (a shared file system)."""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import socket
import uuid
from collections.abc import Callable

import dask

from pipeline import storage
from pipeline.engines.address import CONNECT_TIMEOUT_S
from pipeline.errors import ClusterError

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
    # Each worker process runs dask_setup below when it starts.
    "distributed.worker.preload": [__name__],
}


def dask_setup(worker) -> None:
    """Run by every worker process of the embedded cluster as it starts (a Dask preload).

    A Ctrl-C in the terminal reaches every process of the foreground group: the driver stops
    the run and closes the workers, and a worker's own KeyboardInterrupt only printed a
    traceback per worker."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)


class DaskEngine:
    """Owns a Dask client; closes only the cluster it started itself."""

    def __init__(self, address: str | None, workers: int, worker_memory_bytes: int | None = None) -> None:
        from dask.distributed import Client, LocalCluster

        self.address = address
        self._cluster = None
        try:
            if address:
                self.client = Client(address, timeout=f"{CONNECT_TIMEOUT_S}s")
                if storage.configured():  # --storage_option: the workers of a cluster we did not start need them
                    from pipeline.engines.dask_plugins import StorageOptions

                    self.client.register_plugin(StorageOptions(storage.configured()))
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
                        # The scheduler serves HTTP (health checks) even without the dashboard:
                        # an ephemeral loopback port, never 8787 (which another run may hold).
                        dashboard_address="127.0.0.1:0",
                        scheduler_kwargs={"dashboard": False},
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

    def submit(self, fn: Callable, *args, label: str, retries: int = 0):
        """Run ``fn(*args)`` on a worker; futures among ``args`` are replaced by their results."""
        key = f"{label}-{uuid.uuid4().hex[:8]}"
        return self.client.submit(fn, *args, key=key, retries=retries, pure=False)

    def worker_of(self, future) -> str:
        """The address of the worker that holds ``future``'s result (the one that computed it);
        "" when the scheduler does not say within a second."""
        try:
            holders = self.client.sync(self.client.scheduler.who_has, keys=[future.key], callback_timeout=1)
        except (OSError, TimeoutError, ValueError) as exc:
            logger.debug("who has %s: %s", future.key, exc)
            return ""
        found = holders.get(future.key) or ()
        return sorted(found)[0] if found else ""

    @staticmethod
    def workers_lost(exc: BaseException, what: str) -> str | None:
        """One line when a task failed because its workers kept dying (not by an error of its own)."""
        from distributed.scheduler import KilledWorker

        if isinstance(exc, KilledWorker):
            return f"the Dask workers running {what} died repeatedly (out of memory or killed); see the worker logs"
        return None

    def problem(self) -> str | None:
        """Why the run cannot go on with this cluster, or None. A client that lost its scheduler
        has cancelled every future of the run (``scheduler-connection-lost``), even if it reconnects."""
        status = self.client.status
        if status == "running":
            return None
        where = f"the Dask scheduler at {self.address}" if self.address else "the embedded Dask scheduler"
        return f"lost the connection to {where} (Dask client {status})"

    def close(self, abort: bool = False) -> None:
        """``abort``: the run stops on an error or a signal and the results of the running tasks
        are not wanted: the embedded workers are killed at once instead of being given 4 s to
        finish their task (a chunk is written under a temporary name and renamed, so none is
        left half-written)."""
        if abort and self._cluster is not None:
            self._kill_workers()
        client = getattr(self, "client", None)
        if client is not None:
            if client.status == "running":
                client.close()
            else:
                # A client that lost its scheduler logs the cancelled reconnection as an error with
                # a traceback; the run has already reported the lost scheduler in one line.
                with _silenced("distributed.client"):
                    client.close()
        if self._cluster is not None:
            self._cluster.close()
            self._cluster = None

    def _kill_workers(self) -> None:
        for nanny in list(self._cluster.workers.values()):
            nanny.auto_restart = False  # the nanny would start a new one
            process = getattr(nanny.process, "process", None)  # the worker process the nanny started
            if process is not None and process.pid is not None:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(process.pid, signal.SIGKILL)


@contextlib.contextmanager
def _silenced(name: str):
    log = logging.getLogger(name)
    level = log.level
    log.setLevel(logging.CRITICAL + 1)
    try:
        yield
    finally:
        log.setLevel(level)
