"""Log lines that native libraries print straight to file descriptor 2.

MediaPipe's C++ code (absl logging "before InitGoogle") and TensorFlow Lite
print info and warning lines themselves: a set for each landmarker and each
process (``W0000 ... inference_feedback_manager.cc:121] ...``,
``landmark_projection_calculator.cc``, ``WARNING: Logging before InitGoogle()``,
``INFO: Created TensorFlow Lite XNNPACK delegate``), repeated by every worker.
None of the environment variables that quiet such libraries reaches them
(``GLOG_minloglevel``, ``TF_CPP_MIN_LOG_LEVEL``, ``GOOGLE_STDERRTHRESHOLD``
change nothing with mediapipe 1.2), and some are printed by the graph's own
threads while frames are tracked.

:class:`NativeLogFilter` therefore holds file descriptor 2 in an in-memory
file while a landmarker lives, and when the last one is closed writes back
every line that is not one of those info or warning lines: errors, and
whatever else the process printed meanwhile, still reach stderr, at the end
of the chunk (a process killed in the middle of one loses them; ``--verbose``
shows everything as it is printed). ``POSE_PIPELINE_NATIVE_LOG=1`` in the
environment turns the filter off (the command line sets it for ``--verbose``;
the Dask workers it starts inherit it).
"""

from __future__ import annotations

import os
import re
import sys
import tempfile
import threading
from typing import IO

SHOW_ENV = "POSE_PIPELINE_NATIVE_LOG"
NOISE = re.compile(
    rb"^(?:[IW]\d{4} [\d:.]+ +\d+ [\w./+-]+:\d+\] "  # absl / glog info and warning lines (E and F pass)
    rb"|WARNING: Logging before InitGoogle\(\)"
    rb"|INFO: Created TensorFlow Lite )"
)


def shown() -> bool:
    """The native libraries' own log lines go to stderr as they are printed."""
    return os.environ.get(SHOW_ENV) == "1"


class _Capture:
    """File descriptor 2 held in a file while any filter is open (one per process)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._holders = 0
        self._saved_fd: int | None = None
        self._file: IO[bytes] | None = None

    def acquire(self) -> None:
        with self._lock:
            if self._holders == 0:
                sys.stderr.flush()
                self._file = _memory_file()
                self._saved_fd = os.dup(2)
                os.dup2(self._file.fileno(), 2)
            self._holders += 1

    def release(self) -> None:
        with self._lock:
            self._holders -= 1
            if self._holders:
                return
            sys.stderr.flush()
            os.dup2(self._saved_fd, 2)
            os.close(self._saved_fd)
            held, self._saved_fd, self._file = self._file, None, None
        held.seek(0)
        kept = b"".join(line for line in held.read().splitlines(keepends=True) if not NOISE.match(line))
        held.close()
        _write_all(2, kept)


_CAPTURE = _Capture()


class NativeLogFilter:
    """Open while a landmarker lives (``open`` ... ``close``, or ``with``); filters
    open at the same time in one process share one capture."""

    def __init__(self) -> None:
        self._open = False

    def open(self) -> NativeLogFilter:
        if not shown() and not self._open:
            _CAPTURE.acquire()
            self._open = True
        return self

    def close(self) -> None:
        if self._open:
            self._open = False
            _CAPTURE.release()

    def __enter__(self) -> NativeLogFilter:
        return self.open()

    def __exit__(self, *exc_info) -> None:
        self.close()


def _memory_file() -> IO[bytes]:
    """A file in memory where the system has one (Linux), else a temporary file."""
    if hasattr(os, "memfd_create"):
        return os.fdopen(os.memfd_create("stderr-held"), "w+b")
    return tempfile.TemporaryFile()


def _write_all(fd: int, data: bytes) -> None:
    while data:
        data = data[os.write(fd, data) :]
