"""Output writers, registered by name.

A writer says what it is (``name``: its key in a video's ``outputs``), whether a
run wants it (``enabled(config)``), where it writes (``location``), how much disk
it needs (``disk_bytes``), and how it is made from the stored analysis
(``plan``: a list of tasks, run on the Dask workers). The orchestrator holds the
registered writers and knows none of them by name; the engine runs any task.

A writer's tasks are plain module-level functions with picklable arguments.
A task may take the results of earlier tasks of the same writer (``after``):
the annotated video's join runs once every segment is rendered. The last task's
success means the output is written. ``memory`` names the kind of task the
memory plan reserves room for (``pipeline.memory.kind_bytes``); a task without
it runs at once (it holds no frames). A writer marked ``only_complete`` runs
after the video's other outputs, and its ``files`` are removed if the video fails.

Adding an output: one module with a writer class in ``pipeline/outputs/`` and
one line in ``pipeline/outputs/__init__.py`` that registers it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from pipeline import storage
from pipeline.config import PipelineConfig
from pipeline.video.probe import VideoInfo


@dataclass(frozen=True)
class VideoOutputs:
    """What a writer knows of one analysed video (plain values)."""

    name: str  # the video's output name (``demo``, ``a__clip``)
    source: str  # the input file, absolute
    info: VideoInfo
    config: PipelineConfig
    store: str  # the stored analysis (``pipeline.analysis.store``), absolute
    frames: int  # frames in the analysis
    chunk_starts: tuple[int, ...]  # first frame of each extraction chunk
    header: dict  # video, model and settings: the pose JSON's header
    cores_per_task: int = 1  # cores each Dask task can count on (an encoder's threads)
    frame_table_at: str | None = None  # the video's stored frame table (a video on object storage)


@dataclass(frozen=True)
class OutputTask:
    fn: Callable[..., Any]
    args: tuple
    label: str  # names the Dask task (with the video) in logs and errors
    memory: str | None = None  # "render", "report", ...: admitted by the memory monitor; None: runs at once
    after: tuple[int, ...] = ()  # tasks of the same plan whose results are appended to ``args``


@dataclass(frozen=True)
class OutputPlan:
    tasks: list[OutputTask]
    scratch: tuple[str, ...] = ()  # folders removed if the video fails before the output is written


@dataclass(frozen=True)
class DiskNeed:
    folder: str  # where the bytes go (the disk check groups folders by volume)
    what: str  # "pose JSON", "annotated video", ...
    nbytes: int


class OutputWriter:
    """Base class: one output of a video."""

    name: str = ""
    label: str = ""  # what the output is called in messages ("annotated video")
    # True: the output exists only for videos that succeed (data built from the
    # others, such as LLM examples): its tasks start once every other output of
    # the video is written, and its files are removed when the video fails.
    only_complete: bool = False

    def enabled(self, config: PipelineConfig) -> bool:
        return True

    def location(self, config: PipelineConfig, name: str) -> str:
        """Where the output goes, as the user gave the folder (shown in the result line)."""
        raise NotImplementedError

    def files(self, config: PipelineConfig, name: str) -> tuple[str, ...]:
        """Every file of the output for one video (removed on failure when ``only_complete``)."""
        return (self.location(config, name),)

    def disk_need(self, config: PipelineConfig, info: VideoInfo) -> DiskNeed | None:
        """Bytes the output needs while it is written (None: small enough not to count)."""
        return None

    def plan(self, video: VideoOutputs) -> OutputPlan:
        raise NotImplementedError

    def target(self, video: VideoOutputs) -> str:
        """Where the workers write: the location made absolute (workers may run in another directory)."""
        return storage.absolute(self.location(video.config, video.name))


@dataclass
class Registry:
    writers: list[OutputWriter] = field(default_factory=list)

    def register(self, writer: OutputWriter) -> OutputWriter:
        if any(w.name == writer.name for w in self.writers):
            raise ValueError(f"an output named {writer.name!r} is registered already")
        self.writers.append(writer)
        return writer

    def enabled(self, config: PipelineConfig) -> list[OutputWriter]:
        return [w for w in self.writers if w.enabled(config)]


REGISTRY = Registry()
register = REGISTRY.register
