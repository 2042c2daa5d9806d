"""Ray side: an embedded local instance on loopback or an existing cluster, and the
pool of analyzer actors.

Ray decides at import time whether it may use the machine's network address
(``RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER``); for the embedded instance, and for an
attached cluster at a loopback address, this module sets it to 0 before importing
Ray, so every Ray process binds to 127.0.0.1 and Ray does not replace the address
the user gave with the machine's network address.

Connecting to an attached cluster is bounded: a GCS that does not answer fails
``ray.init`` after one attempt of about 16 s (Ray's default retries for 20 attempts
of 41 s each). Ray's own log records go to the application's logging
configuration (the command line shows them with ``--verbose``).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import socket
import subprocess
from concurrent.futures import Future
from dataclasses import replace

from pipeline import storage
from pipeline.analysis.analyzer import Analysis, AnalysisParams, Analyzer, TrackMeta
from pipeline.analysis.store import save_analysis
from pipeline.analysis.summary import with_stitching
from pipeline.engines.address import RAY_DEFAULT_PORT, parse_endpoint
from pipeline.errors import ClusterError
from pipeline.memory import release_freed_memory
from pipeline.pose.types import PoseChunk
from pipeline.workdir import ChunkRecord, load_stitched

logger = logging.getLogger(__name__)

_LOOPBACK_ENV = "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"
MIN_OBJECT_STORE_BYTES = 80 * 1024**2
# Read by Ray when it is imported; a user's own setting wins.
_ATTACH_ENV = {
    "RAY_NUM_REDIS_GET_RETRIES": "1",  # attempts to reach the GCS (default 20)
    "RAY_py_gcs_connect_timeout_s": "5",  # wait for the GCS's cluster ID per attempt (default 30 s)
}
# The embedded instance's processes that the run cannot do without.
_VITAL = ("gcs_server", "raylet")


def analyze_stored(analyzer: Analyzer, records: list[ChunkRecord], meta: TrackMeta, folder: str) -> dict:
    """Read the chunks from disk, analyse them, store the result in ``folder``; returns the
    summary. What an analyzer actor does with a track, and a Dask worker too when the
    track is ready before Ray is (``analyze_stored_task``)."""
    track, stitching = load_stitched(records)
    linked, person, tracking = analyzer.link_counted(track, meta)
    del track  # only the linked copy is needed from here on
    analysis = analyzer.analyze_linked(linked, meta, tracking, person)
    del linked
    analysis = replace(analysis, summary=with_stitching(analysis.summary, stitching))
    save_analysis(folder, analysis)
    summary = analysis.summary
    del analysis
    release_freed_memory()  # the working set grew with the track: give it back now
    return summary


def analyze_stored_task(records: list[ChunkRecord], meta: TrackMeta, folder: str, params: AnalysisParams) -> dict:
    """Dask task: :func:`analyze_stored` with an analyzer of its own."""
    return analyze_stored(Analyzer(params), records, meta, folder)


class AnalyzerActor:
    """Ray actor body: one Analyzer per actor process."""

    def __init__(self, params: AnalysisParams) -> None:
        self._analyzer = Analyzer(params)
        # The analysis modules import scipy where they use it (the driver never needs it);
        # an actor starts while the chunks are extracted, so it imports it now, not on the first track.
        import scipy.optimize  # noqa: F401
        import scipy.signal  # noqa: F401

    def analyze(self, track: PoseChunk, meta: TrackMeta) -> Analysis:
        return self._analyzer(track, meta)

    def analyze_stored(self, records: list[ChunkRecord], meta: TrackMeta, folder: str) -> dict:
        """Read the chunks from disk, analyse them, store the result in ``folder``;
        only the summary travels back."""
        return analyze_stored(self._analyzer, records, meta, folder)

    def pid(self) -> int:
        return os.getpid()

    def where(self) -> tuple[str, int]:
        return socket.gethostname(), os.getpid()


def _import_ray(loopback: bool, attach: bool):
    if loopback:
        os.environ[_LOOPBACK_ENV] = "0"
    if attach:
        for name, value in _ATTACH_ENV.items():
            os.environ.setdefault(name, value)
    ray_logger = logging.getLogger("ray")
    level = ray_logger.level
    import ray
    from ray._private import ray_constants

    # Importing Ray gives its logger a stderr handler of its own at INFO; the application's
    # logging configuration decides instead (its warnings are noise on a user's terminal).
    ray_logger.handlers.clear()
    ray_logger.propagate = True
    ray_logger.setLevel(level)
    # Ray's C++ failure-signal handler, installed in the driver by ray.init, takes SIGTERM too:
    # it printed a stack and aborted the driver (exit -6) instead of letting it stop its engines.
    # Read when the driver connects; Ray's own processes keep theirs.
    ray_constants.RAY_DISABLE_FAILURE_SIGNAL_HANDLER = True
    if loopback and ray_constants.ENABLE_RAY_CLUSTER:
        # Ray was imported earlier in this process without the loopback setting.
        ray_constants.ENABLE_RAY_CLUSTER = False
    return ray


class RayEngine:
    """Owns the Ray connection and an analyzer pool; shuts down only what it started."""

    def __init__(
        self,
        address: str | None,
        analyzers: int,
        params: AnalysisParams,
        object_store_bytes: int | None = None,
    ) -> None:
        self.address = address
        endpoint = parse_endpoint(address, RAY_DEFAULT_PORT) if address else None
        loopback = not address or (endpoint is not None and endpoint.loopback)
        ray = self._ray = _import_ray(loopback=loopback, attach=bool(address))
        self._started = False
        self._vital: list[tuple[str, subprocess.Popen]] = []
        self._actors = []
        try:
            if address:
                # --storage_option reaches the workers of a cluster we did not start through their environment.
                options = storage.configured()
                runtime_env = {"env_vars": {storage.OPTIONS_ENV: json.dumps(options)}} if options else None
                ray.init(address=address, log_to_driver=False, configure_logging=False, runtime_env=runtime_env)
            else:
                ray.init(
                    num_cpus=analyzers,
                    include_dashboard=False,
                    object_store_memory=max(MIN_OBJECT_STORE_BYTES, object_store_bytes or 0),
                    log_to_driver=False,
                    configure_logging=False,
                )
                self._started = True
                self._vital = _vital_processes(ray)
        except Exception as exc:  # noqa: BLE001 - Ray raises a plain Exception when its node does not start in time
            where = f"the Ray cluster at {address}" if address else "an embedded Ray instance"
            hint = " (a cluster with token authentication needs RAY_AUTH_MODE=token)" if address else ""
            self._shutdown()
            raise ClusterError(f"could not connect to {where}: {_one_line(exc)}{hint}") from exc
        if address:
            # Each actor takes a CPU: on a cluster with fewer, the extra actors would never start,
            # and a track sent to one of them would wait forever.
            analyzers = max(1, min(analyzers, int(ray.cluster_resources().get("CPU", 1))))
        # One actor starts now; the others when tracks arrive (a run of one video needs one, and
        # each actor's start, a process importing numpy and scipy, takes a CPU-second).
        self._actor_class = ray.remote(num_cpus=1, max_restarts=1, max_task_retries=1)(AnalyzerActor)
        self._params = params
        self._max_actors = analyzers
        self._actors = [self._actor_class.remote(params)]
        self._sent = 0

    @property
    def embedded(self) -> bool:
        return self._started

    def _next_actor(self):
        """Actors in turn; a new one for each track until there are ``analyzers``."""
        if self._sent >= len(self._actors) and len(self._actors) < self._max_actors:
            self._actors.append(self._actor_class.remote(self._params))
        actor = self._actors[self._sent % len(self._actors)]
        self._sent += 1
        return actor

    def analyze(self, track: PoseChunk, meta: TrackMeta) -> Future:
        """Send a track to the next actor; the returned Future yields an Analysis."""
        return self._next_actor().analyze.remote(track, meta).future()

    def analyze_stored(self, records: list[ChunkRecord], meta: TrackMeta, folder: str) -> Future:
        """Like :meth:`analyze` with the chunks and the result on disk; the Future yields the summary."""
        return self._next_actor().analyze_stored.remote(records, meta, folder).future()

    def actor_pids(self) -> list[int]:
        return sorted(self._ray.get([actor.pid.remote() for actor in self._actors]))

    def local_actor_pids(self) -> list[int]:
        """PIDs of the analyzer actors that run on this machine."""
        here = socket.gethostname()
        found = self._ray.get([actor.where.remote() for actor in self._actors], timeout=10)
        return sorted(pid for host, pid in found if host == here)

    def problem(self) -> str | None:
        """Why the embedded instance cannot go on (one of its vital processes ended), or None."""
        for name, process in self._vital:
            code = process.poll()
            if code is not None:
                how = f"was killed by signal {-code}" if code < 0 else f"exited with code {code}"
                return f"the embedded Ray instance stopped: its {name} process (pid {process.pid}) {how}"
        return None

    def close(self) -> None:
        if self.problem() is None:
            for actor in self._actors:
                self._ray.kill(actor)
        self._actors = []
        self._shutdown()

    def _shutdown(self) -> None:
        """Disconnect; stops the instance only if this engine started it. A dead instance is
        stopped too (what is left of it), without raising."""
        if not self._ray.is_initialized():
            return
        if self._started:
            _stop_monitor(self._ray)
        if self.problem() is None:
            self._ray.shutdown()
            return
        try:
            self._ray.shutdown()
        except Exception as exc:  # noqa: BLE001 - what Ray raises while stopping a dead node is of no use
            logger.debug("stopping the dead Ray instance: %s", exc)


def _stop_monitor(ray) -> None:
    """Kill the embedded node's autoscaler monitor, which keeps nothing the run needs: given
    SIGTERM by ``ray.shutdown`` it takes the whole second Ray waits before SIGKILL, one by one
    after the other processes (the stop went from 1.35 s to 0.32 s, docs/benchmarks.md)."""
    node = ray._private.worker._global_node
    for info in node.all_processes.get("monitor", []) if node is not None else []:
        if info.process.poll() is None:
            with contextlib.suppress(OSError, subprocess.TimeoutExpired):
                info.process.kill()
                info.process.wait(timeout=5)


def _vital_processes(ray) -> list[tuple[str, subprocess.Popen]]:
    """The embedded node's GCS and raylet, started (and reaped) by this process."""
    node = ray._private.worker._global_node
    found = [(name, info.process) for name in _VITAL for info in node.all_processes.get(name, [])]
    if len(found) != len(_VITAL):
        raise ClusterError(f"the embedded Ray instance started without its {' and '.join(_VITAL)} processes")
    return found


def _one_line(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    return lines[0] if lines else type(exc).__name__
