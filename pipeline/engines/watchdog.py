"""Ends a run's processes when the driver dies, whatever killed it.

The embedded engines run in processes the driver starts (Dask workers; Ray's GCS,
raylet, agents and workers). When the driver is killed (``kill -9``, the OOM killer),
nothing stops them: Ray's agents lived on for 60-80 s with parent PID 1. So the
driver starts this module as a small process of its own (``python -I watchdog.py PID``,
standard library only) in a session of its own, so that a Ctrl-C in the terminal does
not end it first. The watchdog:

- records the driver's descendants every ``POLL_S`` (PID and start time, from
  ``/proc/<pid>/stat``);
- learns that the driver is gone when its end of the pipe closes (the kernel closes
  it however the driver ends), checked against ``/proc`` every ``POLL_S`` as well;
- then sends SIGTERM to the recorded processes still alive and to their own
  descendants, and SIGKILL after ``GRACE_S`` to whatever is left. Before every signal
  it checks the start time, so a PID the system has given to another process is
  never touched;
- exits at once when the driver says ``stop`` (the engines were closed) or when
  nothing of the run is left.

Linux only (``/proc``).
"""

from __future__ import annotations

import contextlib
import os
import select
import signal
import subprocess
import sys
import time
from pathlib import Path

POLL_S = 0.25  # how often the driver's descendants are recorded
GRACE_S = 1.0  # between SIGTERM and SIGKILL (a Ray actor whose raylet is gone ignores SIGTERM)
STOP = b"stop\n"

Table = dict[int, tuple[int, int, str]]  # pid -> (parent pid, start time in clock ticks, state)


def process_table() -> Table:
    """Every process on the machine: parent, start time and state, from /proc/<pid>/stat."""
    table: Table = {}
    for name in os.listdir("/proc"):
        if name.isdigit():
            entry = _stat(int(name))
            if entry is not None:
                table[int(name)] = entry
    return table


def _stat(pid: int) -> tuple[int, int, str] | None:
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            data = f.read()
    except OSError:  # the process ended while the table was read
        return None
    fields = data[data.rindex(b")") + 2 :].split()  # the name in parentheses may hold spaces
    return int(fields[1]), int(fields[19]), fields[0].decode()


def descendants(root: int, table: Table) -> dict[int, int]:
    """``root``'s descendants in ``table``: pid -> start time."""
    children: dict[int, list[int]] = {}
    for pid, (parent, _, _) in table.items():
        children.setdefault(parent, []).append(pid)
    found: dict[int, int] = {}
    todo = list(children.get(root, ()))
    while todo:
        pid = todo.pop()
        if pid not in found:
            found[pid] = table[pid][1]
            todo += children.get(pid, ())
    return found


def _alive(pid: int, started: int, table: Table) -> bool:
    """The same process (not a reused PID) still runs (a zombie has ended)."""
    entry = table.get(pid)
    return entry is not None and entry[1] == started and entry[2] not in ("Z", "X")


def watch(driver: int, stop_pipe: int, poll_s: float = POLL_S, grace_s: float = GRACE_S) -> int:
    """Record ``driver``'s descendants until it ends, then end them; returns how many were signalled.

    ``stop_pipe``: the read end of the driver's pipe (a file descriptor)."""
    table = process_table()
    if driver not in table:
        return 0
    driver_started = table[driver][1]
    me = os.getpid()
    known: dict[int, int] = {}
    pipe_open = True
    while _alive(driver, driver_started, table):
        known.update(descendants(driver, table))
        known.pop(me, None)
        known = {pid: started for pid, started in known.items() if _alive(pid, started, table)}
        if pipe_open and select.select([stop_pipe], [], [], poll_s)[0]:
            message = os.read(stop_pipe, 64)
            if message.startswith(STOP):
                return 0  # the driver closed its engines and says so
            pipe_open = bool(message)  # closed: the driver has ended (checked against /proc below)
        elif not pipe_open:
            time.sleep(poll_s)
        table = process_table()
    return _end(known, me, grace_s)


def _end(known: dict[int, int], me: int, grace_s: float) -> int:
    """SIGTERM to the recorded processes and their descendants, SIGKILL after ``grace_s``."""
    signalled: dict[int, int] = {}
    deadline = time.monotonic() + grace_s
    while True:
        table = process_table()
        for pid, started in list(known.items()):
            if _alive(pid, started, table):
                known.update(descendants(pid, table))  # what they started meanwhile
        known.pop(me, None)
        alive = {pid: started for pid, started in known.items() if _alive(pid, started, table)}
        if not alive:
            return len(signalled)
        late = time.monotonic() > deadline
        for pid in alive:
            if late or pid not in signalled:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL if late else signal.SIGTERM)
                signalled[pid] = alive[pid]
        if late and time.monotonic() > deadline + grace_s:
            return len(signalled)  # what SIGKILL did not end cannot be ended from here
        time.sleep(0.05)


class Watchdog:
    """The driver's handle on its watchdog process."""

    def __init__(self) -> None:
        self._process = subprocess.Popen(
            [sys.executable, "-I", str(Path(__file__).resolve()), str(os.getpid())],
            stdin=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
            start_new_session=True,  # a terminal's Ctrl-C reaches the driver, not the watchdog
        )

    @property
    def pid(self) -> int:
        return self._process.pid

    def stop(self) -> None:
        """The engines are closed: the watchdog exits without touching anything."""
        if self._process.poll() is None:
            with contextlib.suppress(BrokenPipeError):
                self._process.stdin.write(STOP)
                self._process.stdin.flush()
        with contextlib.suppress(BrokenPipeError):
            self._process.stdin.close()
        try:
            self._process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait()


def main() -> int:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # only the driver's end stops it
    watch(int(sys.argv[1]), sys.stdin.fileno())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
