"""Error hierarchy. Every message is one line a user can act on."""

from __future__ import annotations


class PipelineError(Exception):
    """Base class of every error the pipeline raises on purpose."""


class ConfigError(PipelineError):
    """An option or combination of options is invalid."""


class InputError(PipelineError):
    """The requested input (path, folder) does not exist or holds no videos."""


class VideoError(PipelineError):
    """A file is not a readable video, or decoding it failed."""


class ModelError(PipelineError):
    """A pose model file cannot be found, fetched or loaded."""


class ClusterError(PipelineError):
    """Starting or attaching to Dask or Ray failed."""


class OutputError(PipelineError):
    """An output could not be written."""
