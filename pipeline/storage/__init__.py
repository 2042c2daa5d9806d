"""Locations and writes: the one place that opens output files.

A location is a local path or a URL (``s3://bucket/run/output``, ``memory://x``).
``url_to_fs`` turns it into an fsspec filesystem and a path, so code that takes
locations never branches on "local or remote": every writer hands its bytes to
:func:`atomic_write` and reads through :func:`open_file`.

Atomic means a reader sees the old file or the whole new one, never a part:
on a local disk the data goes to a temporary name next to the target, is
fsynced and renamed over it; for a URL it is spooled to a local file and
uploaded: an object store (S3, GCS, Azure) publishes an object only when its
upload completes, which gives the same guarantee, and other stores get a
temporary name renamed over the target (``ATOMIC_UPLOADS``).

Local paths keep a fast path through ``os`` (no fsspec import, no extra
copies); remote locations need the fsspec implementation of their protocol
(``s3fs`` for ``s3://``).

Locks (``locks.py``): one process at a time per video work folder and for
``summary.csv``; ``fcntl.flock`` on local paths, a leased object created by a
conditional write on object storage (:func:`lock_for` picks one).

Options of object stores (an S3-compatible endpoint, a region) come from
:func:`configure` (``--storage_option``) or ``S3_ENDPOINT_URL``; credentials
only from each process's environment and the store's own configuration.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, Any

from pipeline.errors import OutputError, redact
from pipeline.storage.locks import FileLock, LockOwner, LockTimeout, ObjectLock, lock_for

Location = str | os.PathLike

__all__ = [
    "FileLock",
    "Location",
    "LockOwner",
    "LockTimeout",
    "ObjectLock",
    "absolute",
    "atomic_write",
    "configure",
    "configured",
    "ensure_writable",
    "exists",
    "filesystem_options",
    "free_bytes",
    "get_file",
    "info_of",
    "is_dir",
    "is_file",
    "is_local",
    "join",
    "list_names",
    "local_mirror",
    "local_path",
    "lock_for",
    "name_of",
    "open_file",
    "parent_of",
    "protocol_of",
    "put_file",
    "read_json",
    "read_text",
    "readable",
    "redact",
    "remove",
    "remove_tree",
    "url_to_fs",
    "version",
    "volume_id",
    "walk_files",
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


# Options for the filesystems of object stores (``--storage_option key=value``): never
# credentials, which come from each process's environment, ``.env`` or the usual AWS/GCP/Azure
# configuration, so they never travel in a task, a log or an output. Worker processes get the
# options through OPTIONS_ENV (set here for the processes this one starts; the engines pass it
# on to the workers of clusters they attach to).
OPTIONS_ENV = "POSE_PIPELINE_STORAGE_OPTIONS"
ENDPOINT_ENV = "S3_ENDPOINT_URL"
S3_PROTOCOLS = ("s3", "s3a")
NO_OPTIONS = ("file", "local", "memory", "http", "https")  # protocols the options are not for
# Option names that would carry a credential: refused (they belong in the environment).
SECRET_OPTIONS = frozenset(
    {"key", "secret", "token", "password", "session_token", "aws_access_key_id", "aws_secret_access_key",
     "aws_session_token", "account_key", "sas_token", "connection_string", "client_secret", "credentials"}
)  # fmt: skip


def configure(options: dict[str, str]) -> None:
    """Options every object-store filesystem opened in this process (and in the processes it
    starts) gets: ``endpoint_url`` for an S3-compatible server, ``region_name``, ...; replaces
    the earlier ones. A credential is refused with OutputError."""
    secret = sorted(SECRET_OPTIONS & {name.lower() for name in options})
    if secret:
        raise OutputError(
            f"storage option {secret[0]!r} would carry a credential: set it in the environment or .env "
            "(AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, ...) or the store's own configuration instead"
        )
    if options:
        os.environ[OPTIONS_ENV] = json.dumps(options, sort_keys=True)
    else:
        os.environ.pop(OPTIONS_ENV, None)


def configured() -> dict[str, str]:
    """The options of :func:`configure` (in this process's environment)."""
    text = os.environ.get(OPTIONS_ENV)
    return dict(json.loads(text)) if text else {}


def protocol_of(location: Location) -> str:
    """``s3``, ``gs``, ``https``, ...; ``file`` for a local path."""
    text = os.fspath(location)
    return text.split("://", 1)[0].lower() if not is_local(text) else "file"


def filesystem_options(protocol: str) -> dict:
    """The keyword arguments a filesystem of ``protocol`` is opened with."""
    if protocol in NO_OPTIONS:
        return {}
    options: dict = configured()
    if protocol in S3_PROTOCOLS:
        client = {}
        endpoint = options.pop("endpoint_url", None) or os.environ.get(ENDPOINT_ENV)
        if endpoint:
            client["endpoint_url"] = endpoint
        if "region_name" in options:
            client["region_name"] = options.pop("region_name")
        if client:
            options["client_kwargs"] = client
    return options


def url_to_fs(location: Location):
    """``(filesystem, path)`` for any location (fsspec's ``url_to_fs``), opened with the
    options of its protocol. A protocol whose fsspec implementation is not installed
    raises OutputError naming the package to install."""
    from fsspec.core import url_to_fs as _url_to_fs

    text = os.fspath(location)
    try:
        return _url_to_fs(text, **filesystem_options(protocol_of(text)))
    except ImportError as exc:
        raise OutputError(
            f"{redact(text)}: {protocol_of(text)}:// needs a package that is not installed ({exc})"
        ) from exc


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
        # Spooled to a local file, then uploaded: a write that fails uploads nothing (a file object
        # of the store would publish what was written so far when it closes).
        with tempfile.TemporaryDirectory(prefix="pose-upload-") as tmp:
            spool = Path(tmp, "spool")
            with open(spool, mode, encoding=encoding) as fh:
                write(fh)
            put_file(spool, target)
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


# Reading a video from object storage: a seekable file that fetches this much ahead of each read
# (a decoder reads 32 KiB at a time, forward, after one seek to its range's key frame).
READ_AHEAD_BYTES = 4 * 1024**2


@contextlib.contextmanager
def readable(location: Location) -> Iterator[str | IO]:
    """What a decoder opens: a local path as it is (FFmpeg reads the file itself), a remote
    object as a seekable file object that reads ahead (only the byte ranges read are fetched)."""
    if is_local(location):
        yield str(local_path(location))
        return
    fs, path = url_to_fs(location)
    with fs.open(path, "rb", block_size=READ_AHEAD_BYTES, cache_type="readahead") as fh:
        yield fh


def version(location: Location) -> tuple:
    """What changes when the file at ``location`` changes: size and modification time, or
    size and the object's ETag (caches of what was read from a file are keyed by it)."""
    if is_local(location):
        stat = os.stat(local_path(location))
        return stat.st_size, stat.st_mtime_ns
    info = info_of(location)
    tag = info.get("ETag") or info.get("etag") or info.get("LastModified") or info.get("mtime") or info.get("md5")
    return int(info.get("size") or 0), str(tag)


def info_of(location: Location) -> dict:
    """The store's record of a file: ``size``, ``type`` and what the store adds (ETag, ...).
    FileNotFoundError when it is not there."""
    if is_local(location):
        stat = os.stat(local_path(location))
        kind = "directory" if Path(local_path(location)).is_dir() else "file"
        return {"size": stat.st_size, "type": kind, "mtime_ns": stat.st_mtime_ns}
    fs, path = url_to_fs(location)
    return fs.info(path)


def is_file(location: Location) -> bool:
    if is_local(location):
        return local_path(location).is_file()
    fs, path = url_to_fs(location)
    return fs.isfile(path)


def is_dir(location: Location) -> bool:
    if is_local(location):
        return local_path(location).is_dir()
    fs, path = url_to_fs(location)
    return fs.isdir(path)


def name_of(location: Location) -> str:
    """The last part of a path or URL (``demo.mp4``)."""
    return os.fspath(location).rstrip("/").rsplit("/", 1)[-1]


def parent_of(location: Location) -> str:
    """The folder a path or URL is in."""
    text = os.fspath(location)
    if is_local(text):
        return str(local_path(text).parent)
    return text.rstrip("/").rsplit("/", 1)[0]


def walk_files(location: Location) -> list[str]:
    """Every file under a folder (recursive), as locations like ``location``'s, sorted."""
    if is_local(location):
        return sorted(str(p) for p in local_path(location).rglob("*") if p.is_file())
    fs, path = url_to_fs(location)
    protocol = protocol_of(location)
    return sorted(f"{protocol}://{found.lstrip('/')}" for found in fs.find(path))


def list_names(location: Location) -> list[str]:
    """The names of the entries of a folder (files and folders), sorted; [] when it is missing."""
    if is_local(location):
        folder = local_path(location)
        return sorted(p.name for p in folder.iterdir()) if folder.is_dir() else []
    fs, path = url_to_fs(location)
    try:
        return sorted(name_of(entry) for entry in fs.ls(path, detail=False, refresh=True))
    except FileNotFoundError:
        return []


# Stores where an object appears only once its upload completes (multipart uploads included):
# an upload is atomic there. Elsewhere (SFTP, HDFS, fsspec's memory filesystem, ...) a file is
# written under a temporary name and renamed.
ATOMIC_UPLOADS = ("s3", "s3a", "gs", "gcs", "az", "abfs", "abfss")


def put_file(local: str | os.PathLike, location: Location) -> str:
    """Publish the local file ``local`` at ``location`` in one step: an object store's upload
    (the object appears when it completes), or a temporary name renamed over the target."""
    if is_local(location):
        atomic_write(location, lambda fh: _copy_into(local, fh))
        return os.fspath(location)
    fs, path = url_to_fs(location)
    if protocol_of(location) in ATOMIC_UPLOADS:
        fs.put_file(os.fspath(local), path)
        return os.fspath(location)
    # A store whose writes can be seen half done: a temporary name, then a rename.
    folder, _, name = path.rpartition("/")
    temporary = f"{folder}/.{name}.{secrets.token_hex(4)}.part" if folder else f".{name}.{secrets.token_hex(4)}.part"
    fs.put_file(os.fspath(local), temporary)
    try:
        fs.mv(temporary, path)
    except BaseException:
        with contextlib.suppress(OSError):
            fs.rm(temporary)
        raise
    return os.fspath(location)


def _copy_into(local: str | os.PathLike, fh: IO) -> None:
    with open(local, "rb") as source:
        shutil.copyfileobj(source, fh, 1024**2)


def get_file(location: Location, local: str | os.PathLike) -> None:
    """Copy ``location`` to the local file ``local``."""
    if is_local(location):
        shutil.copyfile(local_path(location), local)
        return
    fs, path = url_to_fs(location)
    fs.get_file(path, os.fspath(local))


TEXT_SUFFIXES = (".json", ".jsonl", ".md", ".txt", ".csv", ".html")


@contextlib.contextmanager
def local_mirror(location: Location, fetch: bool = True) -> Iterator[Path]:
    """A local folder standing for ``location``, for code that needs real files (a trainer,
    a dataset builder): the folder itself when it is local; else a temporary folder holding
    a copy of what is there (``fetch``), whose new and changed files are uploaded back when
    the block ends without an error. In uploaded text files the temporary folder's path is
    replaced by ``location``, so the records they hold name where the files are."""
    if is_local(location):
        folder = local_path(location)
        folder.mkdir(parents=True, exist_ok=True)
        yield folder
        return
    base = os.fspath(location).rstrip("/")
    with tempfile.TemporaryDirectory(prefix="pose-mirror-") as tmp:
        root = Path(tmp)
        before: dict[str, int] = {}
        if fetch:
            fs, path = url_to_fs(base)
            prefix = path.rstrip("/") + "/"
            for found in fs.find(path):
                relative = found[len(prefix) :] if found.startswith(prefix) else name_of(found)
                target = root / relative
                target.parent.mkdir(parents=True, exist_ok=True)
                fs.get_file(found, str(target))
                before[relative] = target.stat().st_mtime_ns
        yield root
        for file in sorted(p for p in root.rglob("*") if p.is_file()):
            relative = file.relative_to(root).as_posix()
            if before.get(relative) == file.stat().st_mtime_ns:
                continue
            target = join(base, relative)
            if file.suffix in TEXT_SUFFIXES:
                text = file.read_text(encoding="utf-8").replace(str(root), base)
                write_text(target, text)
            else:
                put_file(file, target)


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
        raise OutputError(f"output folder {redact(text)} is not writable ({reason})") from exc
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
