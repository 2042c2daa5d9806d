"""Admission of weighted work inside a memory budget. Knows nothing of videos.

Each piece of :class:`Work` says how much memory it needs on top of what the
run holds at rest (its weight), how to start it (a callable returning a future)
and which group it belongs to (a group fails or is dropped as a whole). The
scheduler starts work while:

- a slot is free (one per worker),
- the MemoryMonitor's measured total is below its high mark, and
- the weights in flight plus the new one fit the room kept for tasks.

With nothing in flight, work that still does not fit the budget waits
``stall_s`` for memory to be released (counted once no engine is starting),
then comes back as :class:`Stalled` (its group is dropped). Work of weight ``None`` holds no frames: it starts at
once and takes no slot. Work ``after`` other work waits until those have
started (their futures are its inputs: Dask runs it once they finish).

Completed futures come back through :meth:`Scheduler.next_done` in the order
they finish; any object with ``add_done_callback``, ``cancel`` and ``result``
(a Dask or a ``concurrent.futures`` future) will do.
"""

from __future__ import annotations

import queue
import time
from collections import deque
from collections.abc import Callable, Hashable, Iterable
from dataclasses import dataclass, field
from typing import Any, Protocol

STALL_S = 10.0  # how long work that does not fit waits for memory to be released


class Monitor(Protocol):
    """What the scheduler reads of the MemoryMonitor."""

    current: int
    expecting: bool  # an engine is still starting: its memory is not all there yet

    def may_submit(self) -> bool: ...

    def sample(self) -> int: ...


@dataclass(eq=False)
class Work:
    weight: int | None  # bytes needed on top of the run at rest; None: not admitted (starts at once)
    start: Callable[[], Any]  # starts the work, returns its future
    group: Hashable = None  # dropped together (one video's work)
    what: str = ""  # for the stall message: "one render task for 1920x1080 frames"
    tag: Any = None  # the caller's: handed back with the result
    after: tuple[Work, ...] = ()  # work that must have started first
    future: Any = field(default=None, init=False)

    @property
    def ready(self) -> bool:
        return all(w.future is not None for w in self.after)


@dataclass(frozen=True)
class Done:
    work: Work
    future: Any


@dataclass(frozen=True)
class Stalled:
    work: Work
    in_use: int  # bytes the run holds now
    budget: int


class Scheduler:
    def __init__(
        self,
        monitor: Monitor,
        slots: int,
        room: int,
        budget: int,
        stall_s: float = STALL_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.monitor = monitor
        self.slots = slots  # pieces of weighted work at once
        self.room = room  # bytes the weights in flight may add up to
        self.budget = budget
        self.stall_s = stall_s
        self._clock = clock
        self._pending: deque[Work] = deque()
        self._waiting: list[Work] = []  # for the work they come after
        self._active: dict[Work, int] = {}  # weighted work in flight -> weight
        self._running: dict[Hashable, list[Work]] = {}  # group -> started work
        self._dropped: set[Hashable] = set()
        self._done: queue.Queue[Work] = queue.Queue()
        self._stalled_since: float | None = None

    # -- queueing ------------------------------------------------------------------
    def add(self, work: Work, first: bool = False) -> None:
        """Queue ``work`` at the back (or the front); ``weight=None``: start it now."""
        if not work.ready:
            self._waiting.append(work)
        elif work.weight is None:
            self._start(work)
        elif first:
            self._pending.appendleft(work)
        else:
            self._pending.append(work)

    def add_first(self, works: Iterable[Work]) -> None:
        """Queue ``works`` at the front, in their order (what finishes a group goes first)."""
        front = []
        for work in works:
            if work.ready and work.weight is not None:
                front.append(work)
            else:
                self.add(work)
        self._pending.extendleft(reversed(front))

    @property
    def in_flight(self) -> int:
        return len(self._active)

    @property
    def reserved(self) -> int:
        return sum(self._active.values())

    # -- admission -----------------------------------------------------------------
    def pump(self) -> list[Stalled]:
        """Start queued work while there is room; returns the work that can never fit."""
        stalled = []
        while self._pending:
            work = self._pending[0]
            if work.group in self._dropped:
                self._pending.popleft()
                continue
            if self._active:
                if len(self._active) >= self.slots or not self.monitor.may_submit():
                    break
                if self.reserved + work.weight > self.room:
                    break
            elif self.monitor.current + work.weight > self.budget:
                if self.monitor.expecting:  # an engine still starting: what fits is not known yet
                    self._stalled_since = None
                    break
                if not self._wait_for_room(work):
                    continue  # room may come back: try again on the next pump
                self._pending.popleft()
                stalled.append(Stalled(work, self.monitor.current, self.budget))
                self.drop(work.group)
                continue
            self._stalled_since = None
            self._pending.popleft()
            self._active[work] = work.weight
            self._start(work)
        return stalled

    def _wait_for_room(self, work: Work) -> bool:
        """Nothing runs yet ``work`` does not fit: wait a little for memory to be
        released. False: it fits now, or try again; True: it stalled for ``stall_s``."""
        now = self._clock()
        if self._stalled_since is None:
            self._stalled_since = now
        if now - self._stalled_since < self.stall_s:
            time.sleep(0.1)
            self.monitor.sample()
            return False
        self._stalled_since = None
        return True

    def _start(self, work: Work) -> None:
        self._running.setdefault(work.group, []).append(work)
        work.future = work.start()
        work.future.add_done_callback(lambda _, w=work: self._done.put(w))
        for waiting in [w for w in self._waiting if w.ready]:
            self._waiting.remove(waiting)
            self.add(waiting, first=True)

    # -- results -------------------------------------------------------------------
    def next_done(self, timeout: float) -> Done | None:
        """The next finished work (its weight released), or None after ``timeout`` s."""
        deadline = self._clock() + timeout
        while True:
            try:
                work = self._done.get(timeout=max(0.0, deadline - self._clock()))
            except queue.Empty:
                return None
            self._active.pop(work, None)
            running = self._running.get(work.group)
            if running is not None and work in running:
                running.remove(work)
                if not running:
                    del self._running[work.group]
            if work.group not in self._dropped:
                return Done(work, work.future)

    def drop(self, group: Hashable) -> None:
        """Forget ``group``: its queued work is removed, its running work cancelled
        and its weights released; its results are not handed back."""
        self._dropped.add(group)
        self._pending = deque(w for w in self._pending if w.group != group)
        self._waiting = [w for w in self._waiting if w.group != group]
        for work in self._running.pop(group, []):
            self._active.pop(work, None)
            work.future.cancel()
