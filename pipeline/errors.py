"""Error hierarchy. Every message is one line a user can act on."""

from __future__ import annotations


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
        self.path = str(path)
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
