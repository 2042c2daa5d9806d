"""The admission scheduler alone: weighted work, slots, the memory marks, stalls
and dropped groups, with real futures from a thread pool and a monitor whose
readings the test sets."""

from __future__ import annotations

import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor

import pytest

from pipeline.scheduler import Done, Scheduler, Stalled, Work

MB = 1024**2


class Readings:
    """Stands in for the MemoryMonitor: ``current`` bytes in use, ``high`` the mark above which nothing starts."""

    def __init__(self, current: int = 0, high: int = 10**12) -> None:
        self.current = current
        self.high = high
        self.samples = 0
        self.expecting = False  # an engine still starting

    def may_submit(self) -> bool:
        return self.current < self.high

    def sample(self) -> int:
        self.samples += 1
        return self.current


@pytest.fixture
def pool():
    with ThreadPoolExecutor(max_workers=8) as executor:
        yield executor


def gated(pool, gate: threading.Event, value):
    """A start function whose task runs until ``gate`` is set."""
    return lambda: pool.submit(lambda: (gate.wait(10), value)[1])


def drain(scheduler: Scheduler, count: int, timeout: float = 10) -> list[Done]:
    done, deadline = [], time.monotonic() + timeout
    while len(done) < count and time.monotonic() < deadline:
        scheduler.pump()
        item = scheduler.next_done(0.05)
        if item is not None:
            done.append(item)
    return done


def test_slots_limit_how_much_runs_at_once(pool):
    gate = threading.Event()
    scheduler = Scheduler(Readings(), slots=2, room=100 * MB, budget=1000 * MB)
    for i in range(5):
        scheduler.add(Work(MB, gated(pool, gate, i), group="a", tag=i))
    scheduler.pump()
    assert scheduler.in_flight == 2
    gate.set()
    results = sorted(d.future.result() for d in drain(scheduler, 5))
    assert results == [0, 1, 2, 3, 4]
    assert scheduler.in_flight == 0 and scheduler.reserved == 0


def test_weights_in_flight_never_exceed_the_room(pool):
    gate = threading.Event()
    scheduler = Scheduler(Readings(), slots=8, room=25 * MB, budget=1000 * MB)
    for i in range(4):
        scheduler.add(Work(10 * MB, gated(pool, gate, i), group="a"))
    scheduler.pump()
    assert scheduler.in_flight == 2 and scheduler.reserved == 20 * MB
    gate.set()
    assert len(drain(scheduler, 4)) == 4


def test_nothing_starts_above_the_high_mark_until_memory_falls(pool):
    gate = threading.Event()
    readings = Readings(current=150 * MB, high=100 * MB)
    scheduler = Scheduler(readings, slots=4, room=100 * MB, budget=1000 * MB)
    scheduler.add(Work(MB, gated(pool, gate, "first"), group="a"))
    scheduler.add(Work(MB, gated(pool, gate, "second"), group="a"))
    scheduler.pump()
    assert scheduler.in_flight == 1  # with nothing running, work that fits the budget starts
    scheduler.pump()
    assert scheduler.in_flight == 1  # above the high mark nothing more
    readings.current = 60 * MB
    scheduler.pump()
    assert scheduler.in_flight == 2
    gate.set()
    assert len(drain(scheduler, 2)) == 2


def test_front_work_goes_first(pool):
    order = []
    scheduler = Scheduler(Readings(), slots=1, room=100 * MB, budget=1000 * MB)

    def start(name):
        def run():
            order.append(name)
            future = Future()
            future.set_result(name)
            return future

        return run

    scheduler.add(Work(MB, start("back-1"), group="a"))
    scheduler.add(Work(MB, start("back-2"), group="a"))
    scheduler.add_first([Work(MB, start("front-1"), group="b"), Work(MB, start("front-2"), group="b")])
    drain(scheduler, 4)
    assert order == ["front-1", "front-2", "back-1", "back-2"]


def test_unweighted_work_starts_at_once_and_takes_no_slot(pool):
    gate = threading.Event()
    scheduler = Scheduler(Readings(), slots=1, room=MB, budget=10 * MB)
    scheduler.add(Work(MB, gated(pool, gate, "weighted"), group="a"))
    scheduler.pump()
    scheduler.add(Work(None, gated(pool, gate, "light"), group="a"))
    assert scheduler.in_flight == 1  # the light one runs beside it
    gate.set()
    assert sorted(d.future.result() for d in drain(scheduler, 2)) == ["light", "weighted"]


def test_work_that_never_fits_stalls_its_group_only(pool, monkeypatch):
    readings = Readings(current=90 * MB)
    clock = [0.0]
    scheduler = Scheduler(readings, slots=2, room=50 * MB, budget=100 * MB, stall_s=1.0, clock=lambda: clock[0])
    too_big = Work(20 * MB, gated(pool, threading.Event(), None), group="big", what="one render task")
    scheduler.add(too_big)
    scheduler.add(Work(20 * MB, gated(pool, threading.Event(), None), group="big"))
    ok = Work(5 * MB, lambda: pool.submit(lambda: "fits"), group="small")
    scheduler.add(ok)

    # Each wait for memory advances the test's clock instead of sleeping.
    monkeypatch.setattr("pipeline.scheduler.time.sleep", lambda s: clock.__setitem__(0, clock[0] + s))
    stalled: list[Stalled] = scheduler.pump()
    assert [s.work for s in stalled] == [too_big]
    assert stalled[0].in_use == 90 * MB and stalled[0].budget == 100 * MB
    assert readings.samples >= 10  # it measured again while it waited
    [done] = drain(scheduler, 1)
    assert done.work is ok and done.future.result() == "fits"


def test_work_does_not_stall_while_an_engine_is_starting(pool, monkeypatch):
    """While an engine is starting (its memory expected, not yet measured) the stall clock does
    not run: what fits is not known yet. Once it is up, the wait for room starts."""
    readings = Readings(current=90 * MB)
    readings.expecting = True
    clock = [0.0]
    scheduler = Scheduler(readings, slots=2, room=50 * MB, budget=100 * MB, stall_s=1.0, clock=lambda: clock[0])
    scheduler.add(Work(20 * MB, gated(pool, threading.Event(), None), group="big"))
    monkeypatch.setattr("pipeline.scheduler.time.sleep", lambda s: clock.__setitem__(0, clock[0] + s))
    for _ in range(30):  # each pump returns at once: the orchestrator's loop goes on meanwhile
        clock[0] += 0.1
        assert scheduler.pump() == []
    assert scheduler.reserved == 0
    readings.expecting = False
    up = clock[0]
    stalled = scheduler.pump()
    assert [s.work.group for s in stalled] == ["big"]
    assert 1.0 <= clock[0] - up <= 1.5  # the stall time counted from when the engine was up


def test_dropping_a_group_cancels_it_and_releases_its_room(pool):
    gate = threading.Event()
    scheduler = Scheduler(Readings(), slots=2, room=100 * MB, budget=1000 * MB)
    scheduler.add(Work(30 * MB, gated(pool, gate, "a1"), group="a"))
    scheduler.add(Work(30 * MB, gated(pool, gate, "b1"), group="b"))
    scheduler.add(Work(30 * MB, gated(pool, gate, "a2"), group="a"))
    scheduler.add(Work(30 * MB, gated(pool, gate, "b2"), group="b"))
    scheduler.pump()
    assert scheduler.reserved == 60 * MB
    scheduler.drop("a")
    assert scheduler.reserved == 30 * MB
    gate.set()
    results = sorted(d.future.result() for d in drain(scheduler, 2))
    assert results == ["b1", "b2"]  # nothing of the dropped group comes back
    assert scheduler.next_done(0.2) is None


def test_work_after_others_starts_once_they_have_started(pool):
    gate = threading.Event()
    scheduler = Scheduler(Readings(), slots=1, room=100 * MB, budget=1000 * MB)
    parts = [Work(MB, gated(pool, gate, i), group="a") for i in range(2)]
    started = []

    def join():
        started.append([w.future for w in parts])
        return pool.submit(lambda: sum(w.future.result() for w in parts))

    joined = Work(None, join, group="a", after=tuple(parts))
    scheduler.add_first([*parts, joined])
    scheduler.pump()
    assert not started  # one slot: the second part has not started, so neither has the join
    gate.set()
    done = drain(scheduler, 3)
    assert started and all(f is not None for f in started[0])
    assert [d.future.result() for d in done if d.work is joined] == [1]


def test_dropping_a_group_forgets_its_waiting_work(pool):
    scheduler = Scheduler(Readings(), slots=1, room=100 * MB, budget=1000 * MB)
    part = Work(MB, gated(pool, threading.Event(), 0), group="a")
    joined = Work(None, lambda: pytest.fail("must not start"), group="a", after=(part,))
    scheduler.add(joined)
    scheduler.drop("a")
    scheduler.add(part)
    scheduler.pump()
    assert scheduler.in_flight == 0
