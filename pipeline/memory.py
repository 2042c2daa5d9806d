"""MemoryMonitor: keeps the whole run inside ``--memory_limit`` x system RAM.

What is measured: the resident memory (RSS) of every process of the run on
this machine, summed: the driver and all its descendants (the embedded Dask
workers and their ffmpeg encoders, the embedded Ray processes: GCS, raylet
and its workers, agents) plus the local processes of attached clusters the
run uses (its Dask workers and Ray actors). Summed RSS counts shared pages
once per process, so it errs on the safe side.

How the budget is held:

1. **Plan** (:func:`plan_resources`): before anything starts, the budget is
   split between the driver, Ray (its base processes, the analyzer actors and
   an object store sized from the budget) and the Dask workers (each gets a
   Dask ``memory_limit``). ``--workers auto`` takes as many workers as the
   budget holds (at most one per core); an explicit worker count that does
   not fit, or a budget that does not hold even one worker, fails with the
   amount needed.
2. **Admission** (:class:`MemoryMonitor`): a sampler thread measures the tree
   every 100 ms. The orchestrator submits a task only while the measured
   total is below the *high mark* (the budget minus room for every worker to
   start its largest task at once); above it, submission stops until the total
   falls below the *low mark*. At most one task per worker is in flight.
3. **Chunks**: a chunk's landmarks are written to disk by the worker, so the
   memory a chunk needs depends on the frame size, not on the video's length.
"""

from __future__ import annotations

import contextlib
import ctypes
import gc
import logging
import math
import os
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import psutil

from pipeline.config import MEMORY_LIMIT_RANGE
from pipeline.errors import ConfigError

logger = logging.getLogger(__name__)

MiB = 1024**2
GiB = 1024**3

# Measured on the sample clip (1768x994) with the lite and full models (RSS, MiB);
# see the README's "Memory" section for how to re-measure them.
DRIVER_BYTES = 320 * MiB
RAY_BASE_BYTES = 520 * MiB  # gcs_server, raylet, dashboard and runtime-env agents, monitors
ANALYZER_BYTES = 220 * MiB  # one analyzer actor process, idle
WORKER_BYTES = 300 * MiB  # a Dask worker with MediaPipe and a model loaded
FRAME_COPIES_EXTRACT = 14  # decoded frame, RGB copy, MediaPipe's input and scaled copies
FRAME_COPIES_ENCODE = 36  # ffmpeg/libx264 veryfast: lookahead, references, threads
ENCODER_BASE_BYTES = 30 * MiB
REPORT_BASE_BYTES = 120 * MiB  # matplotlib figures of the report
TABLE_PROCESS_BYTES = 160 * MiB  # the process writing a video's tables (measured 123 MiB on the sample)
MIN_OBJECT_STORE_BYTES = 80 * MiB
OBJECT_STORE_SHARE = 0.05


def system_memory() -> int:
    return psutil.virtual_memory().total


def frame_bytes(width: int, height: int) -> int:
    return width * height * 3


def kind_bytes(kind: str, width: int, height: int) -> int:
    """Extra memory one task of ``kind`` (extract, render, report) needs for frames of this size."""
    frame = frame_bytes(width, height)
    if kind == "render":  # decoded frame, drawn copy, the ffmpeg encoder
        return ENCODER_BASE_BYTES + FRAME_COPIES_ENCODE * frame + 2 * frame
    if kind == "report":  # key frames plus matplotlib's figures
        return REPORT_BASE_BYTES + FRAME_COPIES_EXTRACT * frame
    if kind == "table":  # the tables' own process (pipeline.outputs.tables): no frames
        return TABLE_PROCESS_BYTES
    return FRAME_COPIES_EXTRACT * frame


def task_bytes(width: int, height: int, render: bool) -> int:
    """Largest extra memory one task needs for frames of this size (extraction, report or encoding)."""
    kinds = ("extract", "report", "render") if render else ("extract", "report")
    return max(kind_bytes(kind, width, height) for kind in kinds)


@dataclass(frozen=True)
class ResourcePlan:
    """How the budget is shared out; every figure in bytes."""

    budget: int
    workers: int
    analyzers: int
    worker_limit: int  # Dask memory_limit of each worker
    object_store: int  # Ray object store
    task_reserve: int  # room kept for one task per worker
    fixed: int  # driver + Ray + workers at rest

    @property
    def high_mark(self) -> int:
        return self.budget - self.task_reserve

    @property
    def low_mark(self) -> int:
        return max(self.fixed, self.high_mark - int(0.05 * self.budget))

    def to_dict(self) -> dict:
        return {name: getattr(self, name) for name in self.__dataclass_fields__} | {
            "high_mark": self.high_mark,
            "low_mark": self.low_mark,
        }


def _needed(workers: int, analyzers: int, task: int, object_store: int, embedded_ray: bool, embedded_dask: bool):
    ray = (RAY_BASE_BYTES + object_store if embedded_ray else 0) + analyzers * ANALYZER_BYTES
    dask = workers * WORKER_BYTES if embedded_dask else 0
    fixed = DRIVER_BYTES + ray + dask
    return fixed, fixed + workers * task


def plan_resources(
    fraction: float,
    *,
    cores: int,
    workers: int | None,
    analyzers: int | None,
    largest_frame_wh: tuple[int, int],
    render: bool,
    embedded_ray: bool = True,
    embedded_dask: bool = True,
    total: int | None = None,
) -> ResourcePlan:
    """Share ``fraction`` x RAM out; raise ConfigError saying what is needed when it cannot fit.

    ``workers``/``analyzers`` None means: as many as fit (at most ``cores``; analyzers at most 2).
    ``largest_frame_wh`` is the largest frame size of the batch (it sets the per-task room).
    """
    total = total or system_memory()
    budget = int(fraction * total)
    task = task_bytes(*largest_frame_wh, render)
    object_store = _object_store(budget, embedded_ray)

    def fits_at(share: float, w: int, a: int) -> bool:
        limit = int(share * total)
        return _needed(w, a, task, _object_store(limit, embedded_ray), embedded_ray, embedded_dask)[1] <= limit

    def fits(w: int, a: int) -> bool:
        return fits_at(fraction, w, a)

    chosen_workers = workers or cores
    if workers is None:
        while chosen_workers > 1 and not fits(chosen_workers, 1):
            chosen_workers -= 1
    chosen_analyzers = analyzers or min(2, chosen_workers)
    if analyzers is None:
        while chosen_analyzers > 1 and not fits(chosen_workers, chosen_analyzers):
            chosen_analyzers -= 1
    fixed, needed = _needed(chosen_workers, chosen_analyzers, task, object_store, embedded_ray, embedded_dask)
    if needed > budget:
        what = f"{chosen_workers} worker(s) and {chosen_analyzers} analyzer(s)"
        advice = _advice(fraction, chosen_workers, analyzers, fits_at)
        raise ConfigError(
            f"memory budget {budget / GiB:.2f} GiB (--memory_limit {fraction:g} of {total / GiB:.1f} GiB) "
            f"cannot hold {what} for {largest_frame_wh[0]}x{largest_frame_wh[1]} frames: about "
            f"{needed / GiB:.2f} GiB needed ({advice})"
        )
    worker_limit = WORKER_BYTES + task + max(0, (budget - needed) // max(1, chosen_workers))
    return ResourcePlan(
        budget=budget,
        workers=chosen_workers,
        analyzers=chosen_analyzers,
        worker_limit=int(worker_limit),
        object_store=object_store,
        task_reserve=chosen_workers * task,
        fixed=fixed,
    )


def _object_store(budget: int, embedded_ray: bool) -> int:
    return max(MIN_OBJECT_STORE_BYTES, int(OBJECT_STORE_SHARE * budget)) if embedded_ray else 0


def _advice(fraction: float, workers: int, analyzers: int | None, fits_at: Callable[[float, int, int], bool]) -> str:
    """What makes a run that does not fit possible: a --memory_limit in the allowed
    range, fewer --workers, or both. ``analyzers`` None: as many as fit, up to 2."""
    high = MEMORY_LIMIT_RANGE[1]

    def fit(share: float, w: int) -> bool:
        return any(fits_at(share, w, a) for a in ([analyzers] if analyzers else range(min(2, w), 0, -1)))

    def least_share(w: int) -> float | None:  # the smallest allowed --memory_limit that holds w workers
        start = max(math.ceil(fraction * 100), math.ceil(MEMORY_LIMIT_RANGE[0] * 100))
        return next((p / 100 for p in range(start, round(high * 100) + 1) if fit(p / 100, w)), None)

    def most_workers(share: float) -> int:  # the most workers (fewer than asked) that ``share`` holds
        return next((w for w in range(workers - 1, 0, -1) if fit(share, w)), 0)

    share = least_share(workers)
    here = most_workers(fraction)
    if share is not None:
        return f"--memory_limit {share:g}" + (f", or at most --workers {here} with this limit" if here else "")
    top = most_workers(high)
    if here:
        more = f", or at most --workers {top} with --memory_limit {high:g}" if top > here else ""
        return f"more than the largest --memory_limit, {high:g}, holds: use at most --workers {here}{more}"
    if top:
        return (
            f"more than the largest --memory_limit, {high:g}, holds: "
            f"use at most --workers {top} with --memory_limit {least_share(top):g}"
        )
    hint = "; fewer --analyzers" if analyzers and analyzers > 1 else ""
    return f"more than the largest --memory_limit, {high:g}, holds even for one worker{hint}"


def release_freed_memory() -> None:
    """Hand memory freed by Python back to the OS (glibc keeps freed heap pages
    otherwise: an actor that analysed a long track would hold on to them)."""
    gc.collect()
    with contextlib.suppress(OSError, AttributeError):  # not glibc: nothing to trim
        ctypes.CDLL("libc.so.6").malloc_trim(0)


def tree_processes(roots: Iterable[int]) -> list[psutil.Process]:
    """The processes ``roots`` and all their descendants (each once)."""
    seen: dict[int, psutil.Process] = {}
    for pid in roots:
        try:
            root = psutil.Process(pid)
            family = [root, *root.children(recursive=True)]
        except psutil.Error:
            continue
        for proc in family:
            seen.setdefault(proc.pid, proc)
    return list(seen.values())


def total_rss(procs: Iterable[psutil.Process]) -> int:
    """Summed resident memory of ``procs``, bytes (processes that have ended count 0)."""
    total = 0
    for proc in procs:
        try:
            total += proc.memory_info().rss
        except psutil.Error:
            continue
    return total


def tree_rss(roots: Iterable[int]) -> int:
    """Summed resident memory of ``roots`` and their descendants, bytes."""
    return total_rss(tree_processes(roots))


class MemoryMonitor:
    """Samples the run's memory every ``interval_s`` and answers "may I submit?".

    ``roots()`` returns the PIDs whose trees make up the run (the driver's own
    PID is always included). Above ``high`` submission stops; it starts again
    below ``low``. ``peak`` is the largest total seen.
    """

    def __init__(
        self,
        budget: int,
        high: int,
        low: int,
        roots: Callable[[], Iterable[int]] = tuple,
        interval_s: float = 0.1,
        tree_interval_s: float = 0.5,
    ) -> None:
        if not 0 < low <= high <= budget:
            raise ValueError(f"expected 0 < low <= high <= budget, got {low}, {high}, {budget}")
        self.budget, self.high, self.low = budget, high, low
        self.interval_s = interval_s
        # Listing the process tree scans every process of the machine (about 2 ms): it is
        # refreshed every ``tree_interval_s``, the resident memory of the known processes
        # (one small read each) every ``interval_s``.
        self.tree_interval_s = tree_interval_s
        self._tree: list[psutil.Process] = []
        self._tree_at = float("-inf")
        self._roots = roots
        self._extra: tuple[int, ...] = ()
        self._expected = 0  # what engines still starting will hold (``expect``)
        self.current = 0  # measured, plus what is expected: what admission goes by
        self.peak = 0  # measured only
        self.paused = False
        self.pauses = 0  # how many times submission was stopped
        self.over_budget_s = 0.0  # time spent above the budget
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    def sample(self) -> int:
        now = time.monotonic()
        if now - self._tree_at >= self.tree_interval_s:
            self._tree = tree_processes({os.getpid(), *self._extra})
            self._tree_at = now
        total = total_rss(self._tree)
        with self._lock:
            current = total + self._expected
            self.current = current
            self.peak = max(self.peak, total)
            if self.paused and current < self.low:
                self.paused = False
                logger.debug("memory %.0f MiB below the low mark: submitting again", current / MiB)
            elif not self.paused and current >= self.high:
                self.paused = True
                self.pauses += 1
                logger.debug("memory %.0f MiB above the high mark: holding submissions", current / MiB)
        return total

    def expect(self, nbytes: int) -> None:
        """``nbytes`` that an engine still starting will hold (the embedded Ray: its processes
        appear over seconds) count as in use until it is up, then ``expect(0)``: work is not
        admitted into room the engine is about to take."""
        with self._lock:
            self._expected = max(0, int(nbytes))
        self.sample()

    @property
    def expecting(self) -> bool:
        """An engine is still starting (its memory is expected, not yet measured)."""
        return self._expected > 0

    def refresh_roots(self) -> None:
        """Ask ``roots()`` again (engines started, workers restarted)."""
        try:
            self._extra = tuple(self._roots())
            self._tree_at = float("-inf")  # list the tree again at the next sample
        except Exception as exc:  # noqa: BLE001 - an engine that cannot answer keeps the old list
            logger.debug("memory monitor: could not list the engines' processes: %s", exc)

    def may_submit(self) -> bool:
        with self._lock:
            return not self.paused

    def start(self) -> MemoryMonitor:
        self.refresh_roots()
        self.sample()
        self._thread = threading.Thread(target=self._loop, name="memory-monitor", daemon=True)
        self._thread.start()
        return self

    def _loop(self) -> None:
        last = time.monotonic()
        refreshed = last
        while not self._stop.wait(self.interval_s):
            total = self.sample()
            now = time.monotonic()
            if total > self.budget:
                self.over_budget_s += now - last
            last = now
            if now - refreshed > 5.0:
                self.refresh_roots()
                refreshed = now

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def report(self) -> dict:
        return {
            "budget_bytes": self.budget,
            "high_mark_bytes": self.high,
            "low_mark_bytes": self.low,
            "peak_bytes": self.peak,
            "pauses": self.pauses,
            "over_budget_s": round(self.over_budget_s, 2),
        }
