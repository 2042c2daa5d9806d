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
whatever else the process printed meanwhile, still reach stderr (later, not
lost). ``POSE_PIPELINE_NATIVE_LOG=1`` in the environment turns it off (the
command line sets it for ``--verbose``; the Dask workers it starts inherit it).
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

_lock = threading.Lock()
_depth = 0
_saved_fd: int | None = None
_held: IO[bytes] | None = None


def shown() -> bool:
    """The native libraries' own log lines go to stderr as they are printed."""
    return os.environ.get(SHOW_ENV) == "1"


class NativeLogFilter:
    """Held while a landmarker lives (``open`` ... ``close``, or ``with``); nested and concurrent holds share one capture."""

    def __init__(self) -> None:
        self._open = False

    def open(self) -> NativeLogFilter:
        global _depth, _saved_fd, _held
        if shown() or self._open:
            return self
        with _lock:
            if _depth == 0:
                sys.stderr.flush()
                _held = _memory_file()
                _saved_fd = os.dup(2)
                os.dup2(_held.fileno(), 2)
            _depth += 1
            self._open = True
        return self

    def close(self) -> None:
        global _depth, _saved_fd, _held
        if not self._open:
            return
        with _lock:
            self._open = False
            _depth -= 1
            if _depth:
                return
            sys.stderr.flush()
            os.dup2(_saved_fd, 2)
            os.close(_saved_fd)
            held, _saved_fd, _held = _held, None, None
        held.seek(0)
        kept = b"".join(line for line in held.read().splitlines(keepends=True) if not NOISE.match(line))
        held.close()
        _write_all(2, kept)

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
