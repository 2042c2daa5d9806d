"""Ray side: an embedded local instance on loopback or an existing cluster, and the
pool of analyzer actors.

Ray decides at import time whether it may use the machine's network address
(``RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER``); for the embedded instance this module
sets it to 0 before importing Ray, so every Ray process binds to 127.0.0.1.
"""

from __future__ import annotations

import itertools
import logging
import os
import socket
from concurrent.futures import Future

from pipeline.analysis.analyzer import Analysis, AnalysisParams, Analyzer, TrackMeta
from pipeline.analysis.store import save_analysis
from pipeline.errors import ClusterError
from pipeline.memory import release_freed_memory
from pipeline.pose.types import PoseChunk
from pipeline.workdir import ChunkRecord, load_track

_LOOPBACK_ENV = "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"
MIN_OBJECT_STORE_BYTES = 80 * 1024**2


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
        track = load_track(records)
        linked = self._analyzer.link(track, meta)
        del track  # only the linked copy is needed from here on
        analysis = self._analyzer.analyze_linked(linked, meta)
        del linked
        save_analysis(folder, analysis)
        summary = analysis.summary
        del analysis
        release_freed_memory()  # the working set grew with the track: give it back now
        return summary

    def pid(self) -> int:
        return os.getpid()

    def where(self) -> tuple[str, int]:
        return socket.gethostname(), os.getpid()


def _import_ray(embedded: bool):
    if embedded:
        os.environ[_LOOPBACK_ENV] = "0"
    import ray
    from ray._private import ray_constants

    if embedded and ray_constants.ENABLE_RAY_CLUSTER:
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
        ray = self._ray = _import_ray(embedded=not address)
        self._started = False
        try:
            if address:
                ray.init(address=address, log_to_driver=False, logging_level=logging.WARNING)
            else:
                ray.init(
                    num_cpus=analyzers,
                    include_dashboard=False,
                    object_store_memory=max(MIN_OBJECT_STORE_BYTES, object_store_bytes or 0),
                    log_to_driver=False,
                    logging_level=logging.WARNING,
                    configure_logging=False,
                )
                self._started = True
        except (ConnectionError, RuntimeError, ValueError, TimeoutError) as exc:
            where = f"the Ray cluster at {address}" if address else "an embedded Ray instance"
            hint = " (a cluster with token authentication needs RAY_AUTH_MODE=token)" if address else ""
            raise ClusterError(f"could not connect to {where}: {exc}{hint}") from exc
        if address:
            # Each actor takes a CPU: on a cluster with fewer, the extra actors would never start,
            # and a track sent to one of them would wait forever.
            analyzers = max(1, min(analyzers, int(ray.cluster_resources().get("CPU", 1))))
        actor_class = ray.remote(num_cpus=1, max_restarts=1, max_task_retries=1)(AnalyzerActor)
        self._actors = [actor_class.remote(params) for _ in range(analyzers)]
        self._next = itertools.cycle(self._actors)

    @property
    def embedded(self) -> bool:
        return self._started

    def analyze(self, track: PoseChunk, meta: TrackMeta) -> Future:
        """Send a track to the next actor; the returned Future yields an Analysis."""
        return next(self._next).analyze.remote(track, meta).future()

    def analyze_stored(self, records: list[ChunkRecord], meta: TrackMeta, folder: str) -> Future:
        """Like :meth:`analyze` with the chunks and the result on disk; the Future yields the summary."""
        return next(self._next).analyze_stored.remote(records, meta, folder).future()

    def actor_pids(self) -> list[int]:
        return sorted(self._ray.get([actor.pid.remote() for actor in self._actors]))

    def local_actor_pids(self) -> list[int]:
        """PIDs of the analyzer actors that run on this machine."""
        here = socket.gethostname()
        found = self._ray.get([actor.where.remote() for actor in self._actors], timeout=10)
        return sorted(pid for host, pid in found if host == here)

    def close(self) -> None:
        for actor in self._actors:
            self._ray.kill(actor)
        self._actors = []
        if self._ray.is_initialized():
            self._ray.shutdown()  # disconnects; stops the instance only if we started it
