"""The lock of pipeline.storage against a real second process: it names the
holder's PID, every wait is bounded, a holder killed with SIGKILL frees it,
and a URL is refused with a clear error."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time

import pytest
from conftest import REPO

from pipeline.errors import OutputError
from pipeline.storage import FileLock, LockOwner, LockTimeout

HOLD = (
    "import sys, time\n"
    "from pipeline.storage import FileLock\n"
    "lock = FileLock(sys.argv[1])\n"
    "assert lock.try_acquire() is None\n"
    "print('held', flush=True)\n"
    "time.sleep(120)\n"
)


def _holder(path) -> subprocess.Popen:
    """Another process that takes the lock at ``path`` and keeps it."""
    child = subprocess.Popen(
        [sys.executable, "-c", HOLD, str(path)],
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        stdout=subprocess.PIPE,
        text=True,
    )
    assert child.stdout.readline().strip() == "held"
    return child


def test_a_lock_held_elsewhere_names_the_holder_and_is_freed_when_it_dies(tmp_path):
    path = tmp_path / ".work" / "demo.lock"
    child = _holder(path)
    try:
        lock = FileLock(path)
        assert lock.try_acquire() == LockOwner(child.pid, socket.gethostname())
        assert not lock.held
        assert lock.holder().pid == child.pid
        assert lock.holder().describe() == f"PID {child.pid}"
        started = time.monotonic()
        with pytest.raises(LockTimeout, match=f"held by another run \\(PID {child.pid}\\) for over 1 s"):
            lock.acquire(timeout=1.0)
        waited = time.monotonic() - started
        assert 1.0 <= waited < 10, waited  # bounded
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait(timeout=30)
    # The kernel released the lock with the process: no stale lock after a crash.
    assert lock.holder() is None
    assert lock.try_acquire() is None and lock.held
    assert lock.holder() == LockOwner.me()
    assert FileLock(path).try_acquire() == LockOwner.me()  # a second object in this process is another holder
    lock.release()
    assert lock.holder() is None
    assert path.exists()  # lock files are never removed


def test_the_lock_is_not_passed_to_child_processes(tmp_path):
    """A run's children (Dask workers, ffmpeg) outlive a killed driver; they must not keep its locks."""
    lock = FileLock(tmp_path / "demo.lock")
    assert lock.try_acquire() is None
    code = "import time; print('started', flush=True); time.sleep(60)"
    child = subprocess.Popen([sys.executable, "-c", code], close_fds=False, stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout.readline().strip() == "started"  # past exec: what it inherited, it holds now
        lock.release()
        assert FileLock(tmp_path / "demo.lock").holder() is None
    finally:
        child.kill()
        child.wait(timeout=30)


def test_object_storage_is_refused_with_a_clear_error():
    with pytest.raises(OutputError, match="locks on object storage are not supported yet"):
        FileLock("s3://bucket/run/.work/demo.lock")
