"""One video in flight: its stage, as a small state machine, and what it has
gathered so far (chunk records, the analysis summary, outputs still pending)."""

from __future__ import annotations

import time
from enum import StrEnum
from pathlib import Path

from pipeline import storage
from pipeline.errors import redact
from pipeline.plan import VideoPlan
from pipeline.results import VideoResult
from pipeline.workdir import ChunkRecord, WorkFolder


class Stage(StrEnum):
    """Where a video is. The values are the ``stage`` of its ProgressEvents."""

    NEW = "new"  # probed, not planned yet
    PLANNED = "planned"  # chunks planned; the finished ones of an earlier run found
    EXTRACT = "extract"  # chunks on the Dask workers
    ANALYZE = "analyze"  # the track on a Ray actor
    RENDER = "render"  # the outputs being written
    DONE = "done"
    FAILED = "failed"
    SKIPPED = "skipped"  # complete from an earlier run
    HELD = "held"  # another run holds the video's lock: left alone

    @property
    def final(self) -> bool:
        return self in (Stage.DONE, Stage.FAILED, Stage.SKIPPED, Stage.HELD)


_NEXT: dict[Stage, frozenset[Stage]] = {
    Stage.NEW: frozenset({Stage.PLANNED, Stage.SKIPPED, Stage.HELD}),
    # RENDER at once: the outputs a finished video misses, written from its kept analysis
    Stage.PLANNED: frozenset({Stage.EXTRACT, Stage.ANALYZE, Stage.RENDER}),
    Stage.EXTRACT: frozenset({Stage.ANALYZE}),
    Stage.ANALYZE: frozenset({Stage.RENDER}),
    Stage.RENDER: frozenset({Stage.DONE}),
}


class VideoRun:
    """Book-keeping of one video while it is in flight."""

    def __init__(self, path: Path | str, name: str, work: WorkFolder) -> None:
        self.location = str(path)  # as given (a URL with its query: never shown; ``result.video`` is redacted)
        self.result = VideoResult(video=redact(path), name=name)
        # What the workers open: they may run in another directory, or on another machine (a URL).
        self.source = storage.absolute(path)
        self.work = work
        self.stage = Stage.NEW
        self.started = time.perf_counter()
        self.plan: VideoPlan | None = None
        self.records: dict[int, ChunkRecord] = {}
        self.summary: dict | None = None
        self.pending_outputs: set[str] = set()
        self.final_outputs: list = []  # scheduler work of the outputs written once the others are
        self.scratch: list[str] = []  # folders to remove if the video fails
        # A video an earlier run completed that misses some outputs: its recorded result,
        # the writers to run (the others' outputs are kept) and whether its stored analysis is reused.
        self.recorded: dict | None = None
        self.only: set[str] | None = None
        self.analysis_kept = False

    def advance(self, stage: Stage) -> None:
        """Move to ``stage``; any stage may fail, others only forward."""
        if stage is not Stage.FAILED and stage not in _NEXT.get(self.stage, ()):
            raise RuntimeError(f"{self.result.name}: {self.stage} cannot go to {stage}")
        if self.stage.final:
            raise RuntimeError(f"{self.result.name}: already {self.stage}")
        self.stage = stage

    @property
    def finished(self) -> bool:
        return self.stage.final

    @property
    def frames_done(self) -> int:
        return sum(r.frames for r in self.records.values())

    @property
    def all_chunks_done(self) -> bool:
        return self.plan is not None and len(self.records) == len(self.plan.specs)
