"""What a run returns: one VideoResult per video, a BatchResult for the run, and
the ProgressEvents sent to a progress callback while it runs."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from pipeline.video.probe import VideoInfo

if TYPE_CHECKING:
    from pipeline.llm.stage import StageResult


@dataclass
class VideoResult:
    """Outcome of one video: ``success`` with outputs, or ``error`` (one line)."""

    video: str
    name: str
    success: bool = False
    error: str | None = None
    info: VideoInfo | None = None
    frames: int = 0
    frames_analysed: int = 0
    frames_with_person: int = 0
    persons: int = 0
    chunks: int = 0
    chunks_reused: int = 0  # finished by an earlier run and not recomputed
    skipped: bool = False  # complete from an earlier run with the same input and settings
    rewritten: list[str] = field(default_factory=list)  # the only outputs written; the others were kept
    held_by: str | None = None  # another run holds the video's lock ("PID 123"): not processed by this one
    elapsed_s: float = 0.0
    outputs: dict[str, str] = field(default_factory=dict)
    summary: dict | None = None

    @property
    def fps(self) -> float:
        return self.frames_analysed / self.elapsed_s if self.elapsed_s > 0 else 0.0

    def line(self) -> str:
        if self.held_by:
            return f"skipped {self.video}: {self.error}"
        if not self.success:
            return f"FAILED {self.video}: {self.error}"
        outputs = ", ".join(self.outputs.values())
        if self.skipped:
            return f"done {self.video}: complete from an earlier run with the same settings (--force redoes it) -> {outputs}"
        reused = f", {self.chunks_reused}/{self.chunks} chunks from an earlier run" if self.chunks_reused else ""
        lost = len((self.summary or {}).get("undecodable_frames") or [])
        undecodable = f" ({lost} could not be decoded: see the flags)" if lost else ""
        if self.rewritten:
            reused += f", only {', '.join(self.rewritten)} written (the other outputs were complete)"
        return (
            f"ok {self.video}: {self.frames} frames{undecodable}, {self.frames_with_person} with a person, "
            f"{self.persons} person(s), {self.fps:.1f} frames/s{reused} -> {outputs}"
        )

    @classmethod
    def from_dict(cls, data: dict) -> VideoResult:
        fields = {k: v for k, v in data.items() if k in cls.__dataclass_fields__}
        if data.get("info"):
            fields["info"] = VideoInfo(**{k: v for k, v in data["info"].items() if k != "duration_s"})
        return cls(**fields)

    def to_dict(self) -> dict:
        return {
            "video": self.video,
            "name": self.name,
            "success": self.success,
            "error": self.error,
            "info": self.info.to_dict() if self.info else None,
            "frames": self.frames,
            "frames_analysed": self.frames_analysed,
            "frames_with_person": self.frames_with_person,
            "persons": self.persons,
            "chunks": self.chunks,
            "chunks_reused": self.chunks_reused,
            "skipped": self.skipped,
            "rewritten": list(self.rewritten),
            "held_by": self.held_by,
            "elapsed_s": round(self.elapsed_s, 3),
            "fps": round(self.fps, 2),
            "outputs": dict(self.outputs),
            "summary": self.summary,
        }


@dataclass
class BatchResult:
    videos: list[VideoResult]
    elapsed_s: float = 0.0
    summary_csv: str | None = None
    memory: dict = field(default_factory=dict)  # the MemoryMonitor's report
    llm: StageResult | None = None  # the LLM step (teachers, dataset, training), when the run wrote examples

    @property
    def success(self) -> bool:
        """Every video succeeded (none failed or was held by another run) and the LLM step, if any, completed."""
        return all(v.success for v in self.videos) and (self.llm is None or self.llm.ok)

    @property
    def failed(self) -> list[VideoResult]:
        return [v for v in self.videos if not v.success and not v.held_by]

    @property
    def held(self) -> list[VideoResult]:
        """Videos another run was processing: this run left them alone."""
        return [v for v in self.videos if v.held_by]

    def to_dict(self) -> dict:
        return {
            "success": self.success,
            "elapsed_s": round(self.elapsed_s, 3),
            "summary_csv": self.summary_csv,
            "memory": self.memory,
            "videos": [v.to_dict() for v in self.videos],
        }


@dataclass(frozen=True)
class ChunkEvent:
    """One chunk's status: queued, processing, completed (``reused``: by an earlier run) or
    failed; a completed chunk's landmarks are at ``artifact``, tracked by ``worker`` in ``seconds``."""

    index: int
    start: int
    end: int  # exclusive
    status: str
    artifact: str = ""
    worker: str = ""
    seconds: float = 0.0
    reused: bool = False
    error: str = ""


@dataclass(frozen=True)
class ProgressEvent:
    """Sent to the progress callback. ``stage``: planned (``frames_done`` counts
    frames an earlier run finished), extract, analyze, render, done, failed or skipped.
    ``chunks``: the chunks whose status changed (every chunk when the video is planned)."""

    video: str
    stage: str
    frames_done: int
    frames_total: int
    name: str = ""
    chunks: tuple[ChunkEvent, ...] = ()
