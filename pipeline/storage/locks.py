"""Locks: one process at a time works on a video's work folder, or rewrites
``summary.csv``.

On a local file system a lock is ``fcntl.flock`` on a lock file. The kernel
releases it when the holder's process ends in any way (``kill -9`` too), so a
crashed run never leaves a stale lock. The holder writes its PID and host into
the file, so a run that finds the lock taken can name the other run. Lock files
are never removed: removing one while another process waits on it would let two
processes hold "the" lock on two different files. The descriptor is opened
close-on-exec, so the run's child processes (Dask workers, ffmpeg) never hold it.

Object storage: :class:`ObjectLock`. The lock is one object ``<location>``
(``s3://bucket/out/.work/demo.lock``) whose body is the owner's record: PID,
host, a random run id and ``expires``, the end of its lease (``LEASE_S``, a
minute). On S3 and S3-compatible stores every change is a conditional request,
so the store itself decides which of two runs wins:

- taking it is a put with ``If-None-Match: *`` (refused when the object exists);
- the holder's thread renews the lease every ``lease / 3`` with a put conditional
  on the ETag it last wrote (``If-Match``); a renewal that is refused means
  another run took the lock over: a warning is logged and ``held`` turns False;
- a dead holder's lock is taken over with a put conditional on the ETag that was
  read, so of two runs taking it over at once exactly one succeeds. A holder is
  dead when its lease has expired, or at once when it ran on this host (same
  host name, boot and PID namespace) and its PID is gone, a zombie, or belongs
  to a process started later: a rerun after ``kill -9`` does not wait out the
  lease;
- release stops the renewals and deletes the object only while it is still this
  run's: the record is read and its run id compared (for servers that ignore
  ``If-Match`` on DELETE), then the delete itself is conditional on the ETag
  (``If-Match``: the S3 API documents it for DeleteObject and moto, which the
  tests run against, honours it), so a lock taken over in between is left to
  its new owner.

Only stores with conditional writes give the exclusive guarantee. Other fsspec
file systems (``memory://`` in tests) get a best-effort emulation: check, then
write, which two processes can interleave. Google Cloud Storage could do the same
as S3 with ``if_generation_match`` (0 to create, the generation read to replace);
that is not implemented, so ``gs://`` falls back to the best-effort one.
The lease is judged by the wall clocks of the hosts involved: they must agree to
well within a lease (NTP does). Nothing changes for the callers:
``try_acquire`` / ``acquire`` / ``release`` / ``holder`` keep their meaning;
only the expiry of a dead holder's lock becomes the lease's instead of the
kernel's. :func:`lock_for` picks the kind for a location.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import logging
import os
import secrets
import socket
import threading
import time
import weakref
from dataclasses import dataclass
from pathlib import Path

from pipeline.errors import OutputError, redact

__all__ = ["FileLock", "LockOwner", "LockTimeout", "ObjectLock", "lock_for"]

logger = logging.getLogger(__name__)

# A lock probed by ``holder`` is held for microseconds; a run that finds one taken
# looks again for this long before it concludes that another run holds it.
PROBE_GRACE_S = 0.2
# The owner's record is written just after the lock is taken; a reader waits this long for it.
RECORD_WAIT_S = 1.0
# The lease of an object lock: a holder that stops renewing it (it died, or lost the network)
# loses the lock this long after its last renewal. Renewed every third of it.
LEASE_S = 60.0


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


def lock_for(location: str | os.PathLike) -> FileLock | ObjectLock:
    """The lock for ``location``: a :class:`FileLock` for a local path or ``file://`` URL,
    an :class:`ObjectLock` for any other URL."""
    text = os.fspath(location)
    return FileLock(text) if _is_local(text) else ObjectLock(text)


def _is_local(text: str) -> bool:
    return "://" not in text or text.startswith("file://")


class _Conflict(Exception):
    """A conditional write or delete was refused: the object is not the one it was conditional on."""


@dataclass(frozen=True)
class _Version:
    """The lock object as read: its body, the tag a conditional write names, its age."""

    data: bytes
    tag: str
    modified: float | None  # seconds since the epoch, when the store says


def _error_code(exc: BaseException) -> str | None:
    """The S3 error code (``PreconditionFailed``, ``NoSuchKey``, ...) behind an exception s3fs raised."""
    seen: BaseException | None = exc
    for _ in range(8):  # s3fs raises a translated error whose cause is botocore's
        if seen is None:
            break
        response = getattr(seen, "response", None)
        if isinstance(response, dict):
            return response.get("Error", {}).get("Code")
        seen = seen.__cause__ or seen.__context__
    return None


def _reason(exc: BaseException) -> str:
    """A short reason for a log line: the S3 error code or the exception's type, never its text
    (which may carry an endpoint or request details)."""
    return _error_code(exc) or type(exc).__name__


class _S3Store:
    """The lock object on S3 or an S3-compatible store: every change is a conditional request."""

    def __init__(self, fs, path: str) -> None:
        self.fs = fs
        self.bucket, self.key, _ = fs.split_path(path)

    def create(self, body: bytes) -> str:
        """Put ``body`` if no object exists (FileExistsError otherwise); returns its ETag."""
        # The same request as fs.open(path, "xb") (a PutObject with If-None-Match: *), made
        # directly for the ETag of exactly what was written.
        try:
            response = self.fs.call_s3("put_object", Bucket=self.bucket, Key=self.key, Body=body, IfNoneMatch="*")
        except FileExistsError:
            raise
        except Exception as exc:
            # 412 without the condition named, or 409 (a concurrent conditional write): taken.
            if _error_code(exc) in ("PreconditionFailed", "ConditionalRequestConflict"):
                raise FileExistsError(self.key) from None
            raise
        return response["ETag"]

    def read(self) -> _Version | None:
        """The object and its ETag, read in one request; None when there is none."""
        from fsspec.asyn import sync

        async def get():
            response = await self.fs._call_s3("get_object", Bucket=self.bucket, Key=self.key)
            try:
                data = await response["Body"].read()
            finally:
                response["Body"].close()
            modified = response.get("LastModified")
            return _Version(data, response["ETag"], modified.timestamp() if modified else None)

        try:
            return sync(self.fs.loop, get)
        except FileNotFoundError:
            return None

    def replace(self, body: bytes, tag: str) -> str:
        """Put ``body`` if the object's ETag is still ``tag`` (_Conflict otherwise); returns the new ETag."""
        try:
            response = self.fs.call_s3("put_object", Bucket=self.bucket, Key=self.key, Body=body, IfMatch=tag)
        except Exception as exc:
            if isinstance(exc, FileNotFoundError) or _error_code(exc) in _CONFLICTS:
                raise _Conflict from None
            raise
        return response["ETag"]

    def delete(self, tag: str) -> None:
        """Delete the object if its ETag is still ``tag`` (_Conflict otherwise; gone already is fine)."""
        try:
            self.fs.call_s3("delete_object", Bucket=self.bucket, Key=self.key, IfMatch=tag)
        except FileNotFoundError:
            return
        except Exception as exc:
            code = _error_code(exc)
            if code == "NoSuchKey":
                return
            if code in _CONFLICTS:
                raise _Conflict from None
            raise


_CONFLICTS = ("PreconditionFailed", "ConditionalRequestConflict", "NoSuchKey")


class _BestEffortStore:
    """The lock object on a file system without conditional writes (``memory://``, and ``gs://``
    until ``if_generation_match`` is used): each condition is checked, then the write made, so
    two processes can interleave. The tag is the body's hash (bodies differ by run id and time)."""

    def __init__(self, fs, path: str) -> None:
        self.fs = fs
        self.path = path

    def create(self, body: bytes) -> str:
        if self.fs.exists(self.path):
            raise FileExistsError(self.path)
        self.fs.pipe_file(self.path, body)
        return _digest(body)

    def read(self) -> _Version | None:
        try:
            data = self.fs.cat_file(self.path)
        except FileNotFoundError:
            return None
        try:
            modified = self.fs.modified(self.path).timestamp()
        except Exception:  # noqa: BLE001 - not every file system says (and the object may be gone already)
            modified = None
        return _Version(data, _digest(data), modified)

    def replace(self, body: bytes, tag: str) -> str:
        current = self.read()
        if current is None or current.tag != tag:
            raise _Conflict
        self.fs.pipe_file(self.path, body)
        return _digest(body)

    def delete(self, tag: str) -> None:
        current = self.read()
        if current is None:
            return
        if current.tag != tag:
            raise _Conflict
        with contextlib.suppress(FileNotFoundError):
            self.fs.rm_file(self.path)


def _digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _parse(data: bytes) -> dict | None:
    """The owner's record in a lock object; None when it is not one."""
    try:
        record = json.loads(data)
        int(record["pid"]), str(record["host"]), float(record["expires"]), str(record["run_id"])
    except (ValueError, KeyError, TypeError):
        return None
    return record if isinstance(record, dict) else None


def _pid_space() -> str:
    """Which processes this one can see: the kernel's boot id and the PID namespace
    (``<uuid> pid:[4026531836]``); "" where neither can be read (not Linux). Two machines
    that share a host name differ in the first, two containers on one host in the second."""
    parts = []
    for read in (
        lambda: Path("/proc/sys/kernel/random/boot_id").read_text().strip(),
        lambda: os.readlink("/proc/self/ns/pid"),
    ):
        try:
            parts.append(read())
        except OSError:
            parts.append("")
    return " ".join(parts).strip()


def _start_time(pid: int) -> float | None:
    """When process ``pid`` started (seconds since the epoch); None when unknown."""
    import psutil

    try:
        return psutil.Process(pid).create_time()
    except psutil.Error:
        return None


def _running(pid: int, started: float | None) -> bool:
    """Process ``pid`` of this host still runs (not a zombie), and is the one that started at
    ``started`` (not a later process that reuses the PID)."""
    import psutil

    try:
        process = psutil.Process(pid)
        if process.status() == psutil.STATUS_ZOMBIE:
            return False
        return started is None or abs(process.create_time() - started) < 1.0
    except psutil.NoSuchProcess:
        return False
    except psutil.Error:  # AccessDenied and the like: it exists
        return True


class ObjectLock:
    """An exclusive lock on ``location``, a URL (``s3://bucket/out/.work/demo.lock``): one
    object on the store, held under a lease that a daemon thread renews (see the module
    docstring). Exclusive on S3 and S3-compatible stores (conditional writes); on other
    fsspec file systems a best-effort emulation. A local path raises OutputError (use
    :class:`FileLock`, or :func:`lock_for`).

    ``try_acquire`` never waits (beyond a few requests); ``acquire(timeout)`` waits at most
    ``timeout`` seconds; ``holder`` says who holds it. ``held`` turns False on its own when the
    lease could not be renewed because another run took the lock over.
    """

    def __init__(self, location: str | os.PathLike, *, lease_s: float = LEASE_S) -> None:
        text = os.fspath(location)
        if _is_local(text):
            raise OutputError(f"{text} is a local path: its lock is a FileLock")
        if lease_s <= 0:
            raise ValueError(f"lease_s must be positive, not {lease_s}")
        from pipeline.storage import url_to_fs

        self.location = text
        self.lease_s = float(lease_s)
        fs, path = url_to_fs(text)
        protocols = (fs.protocol,) if isinstance(fs.protocol, str) else tuple(fs.protocol)
        self._store = _S3Store(fs, path) if "s3" in protocols else _BestEffortStore(fs, path)
        self._mutex = threading.Lock()
        self._record: dict | None = None  # what this object last wrote while it holds the lock
        self._tag: str | None = None  # the ETag of that write
        self._pid = os.getpid()  # a forked child's copy neither renews nor releases the parent's lock
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def held(self) -> bool:
        """Held by this object (False too once another run has taken the lock over)."""
        return self._record is not None and self._pid == os.getpid()

    def try_acquire(self) -> LockOwner | None:
        """Take the lock now. Returns None when taken, else the owner of the lock."""
        if self.held:
            return None
        run_id = secrets.token_hex(16)
        owner = LockOwner(0, "")
        for _ in range(3):  # the object can go (a release) or change (a takeover) between two requests
            record = self._new_record(run_id)
            try:
                tag = self._store.create(_encode(record))
            except FileExistsError:
                pass
            else:
                self._hold(record, tag)
                return None
            current = self._store.read()
            if current is None:
                continue  # released in between: create it again
            theirs = _parse(current.data)
            if theirs is not None and theirs["run_id"] == run_id:
                # Our create went through but its answer was lost and the retry was refused.
                self._hold(theirs, current.tag)
                return None
            owner = _owner_of(theirs)
            if not self._dead(theirs, current.modified):
                return owner
            try:
                tag = self._store.replace(_encode(record), current.tag)
            except _Conflict:
                continue  # another run took it over (or it was released) first: look again
            logger.info(
                "took over the lock %s from %s (%s)",
                redact(self.location),
                owner.describe(),
                "its lease had expired" if _expired(theirs, current.modified) else "its process is gone",
            )
            self._hold(record, tag)
            return None
        return owner

    def acquire(self, timeout: float, poll_s: float = 0.05) -> None:
        """Take the lock, waiting at most ``timeout`` seconds (LockTimeout names the holder)."""
        deadline = time.monotonic() + timeout
        while (owner := self.try_acquire()) is not None:
            if time.monotonic() >= deadline:
                raise LockTimeout(
                    f"{redact(self.location)} is held by another run ({owner.describe()}) for over {timeout:.0f} s"
                )
            time.sleep(poll_s)

    def release(self) -> None:
        """Let go of the lock: stop renewing it and delete the object if it is still this
        run's; releasing a lock not held (or lost to another run) does nothing."""
        if self._pid != os.getpid():
            return  # a forked child's copy: the lock is the parent's
        self._stop.set()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join()
        self._thread = None
        with self._mutex:
            record = self._record
            self._record = self._tag = None
        if record is None:
            return
        try:
            current = self._store.read()
            if current is None:
                return
            theirs = _parse(current.data)
            if theirs is None or theirs["run_id"] != record["run_id"]:
                raise _Conflict
            self._store.delete(current.tag)  # ours by its run id; the delete is conditional all the same
        except _Conflict:
            logger.warning("the lock %s was taken over by another run; left to it", redact(self.location))
        except Exception as exc:  # noqa: BLE001 - release runs in finally blocks; the lease ends the lock anyway
            logger.warning(
                "could not remove the lock %s (%s); it expires within %.0f s",
                redact(self.location),
                _reason(exc),
                self.lease_s,
            )

    def holder(self) -> LockOwner | None:
        """Who holds the lock now (this process when this object holds it); None when nobody
        does, or when its holder is dead (its lock is free to take over)."""
        if self.held:
            return LockOwner.me()
        current = self._store.read()
        if current is None:
            return None
        theirs = _parse(current.data)
        return None if self._dead(theirs, current.modified) else _owner_of(theirs)

    # The lease.

    def _new_record(self, run_id: str) -> dict:
        return {
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "pid_space": _pid_space(),
            "started": _start_time(os.getpid()),
            "run_id": run_id,
            "since": time.time(),
            "expires": time.time() + self.lease_s,
        }

    def _hold(self, record: dict, tag: str) -> None:
        with self._mutex:
            self._record, self._tag = record, tag
        self._stop = threading.Event()
        self._thread = threading.Thread(
            target=_renew_loop,
            args=(weakref.ref(self), self._stop, self.lease_s / 3),
            name=f"lease {redact(self.location)}",
            daemon=True,
        )
        self._thread.start()

    def _renew(self) -> bool:
        """Push the lease's end a lease ahead; False when the lock is lost (stop renewing)."""
        for _ in range(2):
            with self._mutex:
                record, tag = self._record, self._tag
            if record is None:
                return False
            renewed = dict(record, expires=time.time() + self.lease_s)
            try:
                new_tag = self._store.replace(_encode(renewed), tag)
            except _Conflict:
                try:
                    current = self._store.read()
                except Exception:  # noqa: BLE001 - the renewal was refused: lost, whoever holds it now
                    current = None
                theirs = _parse(current.data) if current is not None else None
                if theirs is not None and theirs["run_id"] == record["run_id"]:
                    # A renewal of ours went through but its answer was lost (and a retry of the
                    # request was refused): the object is still ours; renew again with its ETag.
                    if not self._renewed(record, theirs, current.tag):
                        return False
                    continue
                logger.warning(
                    "lost the lock %s: another run (%s) took it over",
                    redact(self.location),
                    _owner_of(theirs).describe() if current is not None else "none now",
                )
                self._lose(record)
                return False
            except Exception as exc:  # noqa: BLE001 - the thread must not die of a network error
                if time.time() < record["expires"]:
                    logger.warning("could not renew the lock %s (%s); retrying", redact(self.location), _reason(exc))
                    return True
                logger.warning(
                    "lost the lock %s: its lease ran out before it could be renewed (%s)",
                    redact(self.location),
                    _reason(exc),
                )
                self._lose(record)
                return False
            return self._renewed(record, renewed, new_tag)
        return True  # the object changed twice under us and is still ours: try again next time

    def _renewed(self, old: dict, record: dict, tag: str) -> bool:
        with self._mutex:
            if self._record is not old:  # released meanwhile
                return False
            self._record, self._tag = record, tag
        return True

    def _lose(self, old: dict) -> None:
        with self._mutex:
            if self._record is old:
                self._record = self._tag = None

    def _dead(self, record: dict | None, modified: float | None) -> bool:
        """The lock's holder is gone: its lease expired, or it ran on this host (same host name,
        boot and PID namespace) and its process is gone."""
        if _expired(record, modified):
            return True
        if record is None or record["host"] != socket.gethostname():
            return False
        if record.get("pid_space", "") != _pid_space():
            return False  # another machine or container that shares the host name: its PIDs are not ours to see
        return not _running(int(record["pid"]), record.get("started"))

    def __del__(self) -> None:
        # At interpreter exit the store may be gone already; the lease ends the lock then.
        with contextlib.suppress(Exception):
            self.release()


def _renew_loop(ref: weakref.ref, stop: threading.Event, interval: float) -> None:
    """The renewal thread: holds its lock only weakly, so a lock object that is dropped is
    released (``__del__``) as a FileLock is."""
    while not stop.wait(interval):
        lock = ref()
        if lock is None or not lock._renew():
            return
        del lock


def _expired(record: dict | None, modified: float | None) -> bool:
    """The lease has ended (for an object that is no lock record: it is older than a lease)."""
    if record is None:
        return modified is not None and time.time() - modified > LEASE_S
    return float(record["expires"]) < time.time()


def _owner_of(record: dict | None) -> LockOwner:
    return LockOwner(int(record["pid"]), str(record["host"])) if record is not None else LockOwner(0, "")


def _encode(record: dict) -> bytes:
    return json.dumps(record).encode() + b"\n"
