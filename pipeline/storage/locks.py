"""Locks: one process at a time works on a video's work folder, or rewrites
``summary.csv``.

On a local file system a lock is ``fcntl.flock`` on a lock file. The kernel
releases it when the holder's process ends in any way (``kill -9`` too), so a
crashed run never leaves a stale lock. The holder writes its PID and host into
the file, so a run that finds the lock taken can name the other run. Lock files
are never removed: removing one while another process waits on it would let two
processes hold "the" lock on two different files. The descriptor is opened
close-on-exec, so the run's child processes (Dask workers, ffmpeg) never hold it.

Object storage (not supported yet: a URL raises OutputError). The plan:
the lock is an object ``<location>`` created with a conditional put
(``If-None-Match: *``; S3 and GCS refuse the put when the object exists), whose
body is the owner (PID, host, a random run id) and a lease expiry a minute
ahead. The holder renews the lease every 20 s with a put conditional on the
object's ETag (``If-Match``) and deletes it, again conditionally, on release.
A lock whose lease has expired (its holder died) is taken over by a put
conditional on the ETag that was read, so two runs cannot both take it over.
Nothing else changes for the callers: ``try_acquire`` / ``acquire`` /
``release`` / ``holder`` keep their meaning; only the expiry of a dead holder's
lock becomes the lease's instead of the kernel's.
"""

from __future__ import annotations

import fcntl
import json
import os
import socket
import time
from dataclasses import dataclass
from pathlib import Path

from pipeline.errors import OutputError

__all__ = ["FileLock", "LockOwner", "LockTimeout"]

# A lock probed by ``holder`` is held for microseconds; a run that finds one taken
# looks again for this long before it concludes that another run holds it.
PROBE_GRACE_S = 0.2
# The owner's record is written just after the lock is taken; a reader waits this long for it.
RECORD_WAIT_S = 1.0


class LockTimeout(OutputError):
    """A lock stayed taken for longer than the caller would wait."""


@dataclass(frozen=True)
class LockOwner:
    """Who holds a lock (``pid`` 0 when its record could not be read)."""

    pid: int
    host: str

    @classmethod
    def me(cls) -> LockOwner:
        return cls(os.getpid(), socket.gethostname())

    def describe(self) -> str:
        """``PID 123`` (with the host when it is another machine)."""
        pid = f"PID {self.pid}" if self.pid else "PID unknown"
        return pid if self.host in ("", socket.gethostname()) else f"{pid} on {self.host}"


class FileLock:
    """An exclusive lock on ``location`` (a local path; a URL raises OutputError).

    ``try_acquire`` never waits; ``acquire(timeout)`` waits at most ``timeout``
    seconds; ``holder`` says who holds it without taking it for long.
    """

    def __init__(self, location: str | os.PathLike) -> None:
        self._fd: int | None = None
        text = os.fspath(location)
        if "://" in text and not text.startswith("file://"):
            raise OutputError(
                f"{text}: locks on object storage are not supported yet (the plan is in pipeline/storage/locks.py)"
            )
        self.path = Path(text.removeprefix("file://"))

    @property
    def held(self) -> bool:
        """Held by this object."""
        return self._fd is not None

    def try_acquire(self) -> LockOwner | None:
        """Take the lock now. Returns None when taken, else the owner of the lock."""
        if self._fd is not None:
            return None
        deadline = time.monotonic() + PROBE_GRACE_S
        while True:
            fd = self._take(fcntl.LOCK_EX)
            if fd is not None:
                break
            if time.monotonic() >= deadline:
                return self._owner()
            time.sleep(0.02)
        record = json.dumps({"pid": os.getpid(), "host": socket.gethostname(), "since": time.time()})
        try:
            os.ftruncate(fd, 0)
            os.pwrite(fd, record.encode() + b"\n", 0)
        except BaseException:
            os.close(fd)
            raise
        self._fd = fd
        return None

    def acquire(self, timeout: float, poll_s: float = 0.05) -> None:
        """Take the lock, waiting at most ``timeout`` seconds (LockTimeout names the holder)."""
        deadline = time.monotonic() + timeout
        while (owner := self.try_acquire()) is not None:
            if time.monotonic() >= deadline:
                raise LockTimeout(f"{self.path} is held by another run ({owner.describe()}) for over {timeout:.0f} s")
            time.sleep(poll_s)

    def release(self) -> None:
        """Let go of the lock (the file stays); releasing a lock not held does nothing."""
        fd, self._fd = self._fd, None
        if fd is not None:
            os.close(fd)  # closing the only descriptor releases the flock

    def holder(self) -> LockOwner | None:
        """Who holds the lock now (this process when this object holds it); None when nobody does."""
        if self._fd is not None:
            return LockOwner.me()
        if not self.path.exists():
            return None
        fd = self._take(fcntl.LOCK_SH)  # conflicts with a holder's exclusive lock only
        if fd is None:
            return self._owner()
        os.close(fd)
        return None

    def _take(self, mode: int) -> int | None:
        """A descriptor of the lock file locked with ``mode``, or None when another holds it."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            fcntl.flock(fd, mode | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return None
        except BaseException:
            os.close(fd)
            raise
        return fd

    def _owner(self) -> LockOwner:
        """The holder's record (waiting briefly for a holder that has just taken the lock to write it)."""
        deadline = time.monotonic() + RECORD_WAIT_S
        while True:
            try:
                data = json.loads(self.path.read_text(encoding="utf-8"))
                return LockOwner(int(data["pid"]), str(data["host"]))
            except (OSError, ValueError, KeyError, TypeError):
                if time.monotonic() >= deadline:
                    return LockOwner(0, "")
                time.sleep(0.02)

    def __del__(self) -> None:
        self.release()
