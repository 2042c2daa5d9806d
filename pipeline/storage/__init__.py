"""Locations and writes: the one place that opens output files.

A location is a local path or a URL (``s3://bucket/run/output``, ``memory://x``).
``url_to_fs`` turns it into an fsspec filesystem and a path, so code that takes
locations never branches on "local or remote": every writer hands its bytes to
:func:`atomic_write` and reads through :func:`open_file`.

Atomic means a reader sees the old file or the whole new one, never a part:
on a local disk the data goes to a temporary name next to the target, is
fsynced and renamed over it; an object store publishes an object only when its
upload completes, which gives the same guarantee.

Local paths keep a fast path through ``os`` (no fsspec import, no extra
copies); remote locations need the fsspec implementation of their protocol
(``s3fs`` for ``s3://``).

Locks (``locks.py``): one process at a time per video work folder and for
``summary.csv``; ``fcntl.flock`` on local paths, with the plan for object
storage in that module.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

from pipeline.errors import OutputError
from pipeline.storage.locks import FileLock, LockOwner, LockTimeout

Location = str | os.PathLike

__all__ = [
    "FileLock",
    "Location",
    "LockOwner",
    "LockTimeout",
    "absolute",
    "atomic_write",
    "ensure_writable",
    "exists",
    "free_bytes",
    "is_local",
    "join",
    "local_path",
    "open_file",
    "read_json",
    "read_text",
    "remove",
    "remove_tree",
    "volume_id",
    "write_bytes",
    "write_json",
    "write_text",
]


def is_local(location: Location) -> bool:
    """A plain path or a ``file://`` URL."""
    text = os.fspath(location)
    return "://" not in text or text.startswith("file://")


def local_path(location: Location) -> Path:
    """The local path of ``location``; a remote one raises OutputError (for the
    few consumers that need a real file: ffmpeg, memory maps)."""
    text = os.fspath(location)
    if not is_local(text):
        raise OutputError(f"{text} is not on a local file system")
    return Path(text.removeprefix("file://"))


def absolute(location: Location) -> str:
    """A local path made absolute (for processes that run in another directory); a URL as it is."""
    text = os.fspath(location)
    return str(local_path(text).resolve()) if is_local(text) else text


def url_to_fs(location: Location):
    """``(filesystem, path)`` for any location (fsspec's ``url_to_fs``)."""
    from fsspec.core import url_to_fs as _url_to_fs

    return _url_to_fs(os.fspath(location))


def join(location: Location, *parts: str) -> str:
    """``location/part/...`` for a path or a URL."""
    text = os.fspath(location)
    if is_local(text):
        return str(Path(text, *parts))
    return "/".join([text.rstrip("/"), *(p.strip("/") for p in parts)])


def atomic_write(location: Location, write: Callable[[IO], Any], *, text: bool = False) -> str:
    """Call ``write(file)`` and publish the result at ``location`` in one step.

    ``text=True`` opens the file as UTF-8 text. Returns ``location`` as a string.
    A failure leaves no partial file and no temporary file behind.
    """
    target = os.fspath(location)
    mode = "w" if text else "wb"
    encoding = "utf-8" if text else None
    if not is_local(target):
        fs, path = url_to_fs(target)
        with fs.open(path, mode, encoding=encoding) as fh:
            write(fh)
        return target
    path = local_path(target)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".part", dir=path.parent)
    try:
        with os.fdopen(fd, mode, encoding=encoding) as fh:
            write(fh)
            fh.flush()
            os.fsync(fh.fileno())
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp creates 0600; outputs get the usual permissions
        os.replace(tmp, path)
    except BaseException as exc:
        Path(tmp).unlink(missing_ok=True)
        if isinstance(exc, OSError) and exc.filename is None:
            exc.filename = str(path)  # a failed write names no file: say which one ("No space left on device: ...")
        raise
    return target


def write_bytes(location: Location, data: bytes) -> str:
    return atomic_write(location, lambda fh: fh.write(data))


def write_text(location: Location, data: str) -> str:
    return atomic_write(location, lambda fh: fh.write(data), text=True)


def write_json(location: Location, data: Any, *, indent: int | None = 1, sort_keys: bool = True) -> str:
    """JSON, atomically (indented by one space and with sorted keys unless told otherwise)."""
    return write_text(location, json.dumps(data, indent=indent, sort_keys=sort_keys))


def open_file(location: Location, mode: str = "rb", **kwargs) -> IO:
    """Open for reading (writes go through :func:`atomic_write`)."""
    if is_local(location):
        return open(local_path(location), mode, **kwargs)  # noqa: SIM115 - the caller closes it
    fs, path = url_to_fs(location)
    return fs.open(path, mode, **kwargs)


def read_text(location: Location) -> str:
    with open_file(location, "r", encoding="utf-8") as fh:
        return fh.read()


def read_json(location: Location) -> Any:
    return json.loads(read_text(location))


def exists(location: Location) -> bool:
    if is_local(location):
        return local_path(location).exists()
    fs, path = url_to_fs(location)
    return fs.exists(path)


def remove(location: Location) -> None:
    """Remove a file; a missing one is fine."""
    if is_local(location):
        local_path(location).unlink(missing_ok=True)
        return
    fs, path = url_to_fs(location)
    with contextlib.suppress(FileNotFoundError):
        fs.rm(path)


def remove_tree(location: Location) -> None:
    """Remove a folder and everything in it; a missing one is fine."""
    if is_local(location):
        shutil.rmtree(local_path(location), ignore_errors=True)
        return
    fs, path = url_to_fs(location)
    with contextlib.suppress(FileNotFoundError):
        fs.rm(path, recursive=True)


def ensure_writable(folder: Location) -> str:
    """Create ``folder`` if needed; raise OutputError when files cannot be created in it."""
    text = os.fspath(folder)
    try:
        if is_local(text):
            path = local_path(text)
            path.mkdir(parents=True, exist_ok=True)
            with tempfile.TemporaryFile(dir=path):
                pass
        else:
            probe = join(text, f".write-check-{os.getpid()}")
            write_bytes(probe, b"")
            remove(probe)
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        raise OutputError(f"output folder {text} is not writable ({reason})") from exc
    return text


def volume_id(location: Location) -> str:
    """Which volume ``location`` is on: folders with the same id share free space."""
    if is_local(location):
        return f"dev:{os.stat(local_path(location)).st_dev}"
    fs, path = url_to_fs(location)
    protocol = fs.protocol[0] if isinstance(fs.protocol, tuple | list) else fs.protocol
    return f"{protocol}:{path.lstrip('/').split('/', 1)[0]}"


def free_bytes(location: Location) -> int | None:
    """Free space where ``location`` is, or None where the store does not say (object storage)."""
    if is_local(location):
        return shutil.disk_usage(local_path(location)).free
    return None
