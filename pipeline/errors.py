"""Error hierarchy. Every message is one line a user can act on."""

from __future__ import annotations

import os
import re


def redact(location) -> str:
    """A location fit for a log line, an error or an output: a URL loses its query string and
    any ``user:password@`` part (a signed URL carries its signature in the query); a local
    path is returned as it is."""
    text = os.fspath(location) if isinstance(location, os.PathLike) else str(location)
    if "://" not in text or text.startswith("file://"):
        return text
    scheme, rest = text.split("://", 1)
    host, slash, path = rest.partition("/")
    host = host.rsplit("@", 1)[-1]
    return f"{scheme}://{host}{slash}{path.split('?', 1)[0].split('#', 1)[0]}"


class PipelineError(Exception):
    """Base class of every error the pipeline raises on purpose."""


class ConfigError(PipelineError):
    """An option or combination of options is invalid."""


class InputError(PipelineError):
    """The requested input (path, folder) does not exist or holds no videos."""


class VideoError(PipelineError):
    """A file is not a readable video, or decoding it failed.

    ``str()`` is ``"<path>: <reason>"``; ``reason`` alone serves where the path
    is already shown (a video's result line).
    """

    def __init__(self, path, reason: str) -> None:
        super().__init__(str(path), reason)  # both in args: the error pickles across processes
        self.path = redact(path)
        self.reason = reason

    def __str__(self) -> str:
        return f"{self.path}: {self.reason}"


class ModelError(PipelineError):
    """A pose model file cannot be found, fetched or loaded."""


class ClusterError(PipelineError):
    """Starting or attaching to Dask or Ray failed."""


class OutputError(PipelineError):
    """An output could not be written."""


class LLMError(PipelineError):
    """Building the training data, calling a teacher model or training failed."""


# -- one line for any failure ----------------------------------------------------------
_ANSI = re.compile(r"\x1b\[[0-?]*[ -/]*[@-~]")  # colour and other terminal control sequences
_REPR = re.compile(r"<[\w.]+ object at 0x[0-9a-fA-F]+>")  # default object reprs
# Where a remote task ran, as engines append it: "(pid=123, ip=127.0.0.1, actor_id=..., repr=...)"
_WHERE = re.compile(r"\s*\((?:pid|ip|actor_id|repr)=[^()]*\)")


def root_cause(exc: BaseException) -> BaseException:
    """The error that ``exc`` reports: wrappers are unwrapped. A remote task's
    error (an engine's wrapper with a ``cause``, such as Ray's RayTaskError) gives
    its cause; an error raised ``from`` another gives that other one, unless it
    is a PipelineError, whose message already says what happened."""
    seen: set[int] = set()
    while id(exc) not in seen:
        seen.add(id(exc))
        wrapped = getattr(exc, "cause", None)
        if isinstance(wrapped, BaseException):
            exc = wrapped
        elif isinstance(exc, PipelineError) or exc.__cause__ is None:
            return exc
        else:
            exc = exc.__cause__
    return exc


def one_line_reason(exc: BaseException) -> str:
    """The cause of ``exc`` as one line for a user: a file-system error as its
    strerror and file name (``No space left on device: '/out/x.npz'``), a
    PipelineError as its message (a VideoError's reason alone: the result line
    shows the path), anything else as ``Type: first line``. No terminal colour
    codes, object reprs or remote-process details."""
    cause = root_cause(exc)
    if isinstance(cause, VideoError):
        text = _first_line(cause.reason)
    elif isinstance(cause, PipelineError):
        text = _first_line(str(cause))
    elif isinstance(cause, OSError) and cause.strerror:
        names = [repr(os.fsdecode(n)) for n in (cause.filename, cause.filename2) if isinstance(n, str | bytes)]
        text = cause.strerror + (": " + " -> ".join(names) if names else "")
    else:
        first = _first_line(str(cause))
        text = f"{type(cause).__name__}: {first}" if first else type(cause).__name__
    return text or type(cause).__name__


def _first_line(text: str) -> str:
    text = _WHERE.sub("", _REPR.sub("", _ANSI.sub("", text)))
    lines = [" ".join(line.split()) for line in text.splitlines()]
    return next((line for line in lines if line), "")
