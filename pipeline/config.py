"""PipelineConfig and the quality presets table."""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, replace
from pathlib import Path

from pipeline.analysis.analyzer import AnalysisParams
from pipeline.analysis.sports import DEFAULT_SPORT, SPORT_PROFILES
from pipeline.errors import ConfigError

# One table: what each --quality preset sets. Every value can be read in
# the pose JSON's "settings" block of a run.
QUALITY_PRESETS: dict[str, dict] = {
    "fast": {
        "pose_model": "lite",
        "warmup_frames": 16,
        "min_detection_confidence": 0.5,
        "min_presence_confidence": 0.5,
        "min_tracking_confidence": 0.5,
        "analysis": AnalysisParams(
            min_visibility=0.3,
            max_track_gap_frames=15,
            min_track_frames=3,
            max_fill_gap_s=0.15,
            outlier_threshold=4.0,
            smoothing_window_s=0.15,
        ),
    },
    "balanced": {
        "pose_model": "full",
        "warmup_frames": 16,
        "min_detection_confidence": 0.5,
        "min_presence_confidence": 0.5,
        "min_tracking_confidence": 0.5,
        "analysis": AnalysisParams(
            min_visibility=0.5,
            max_track_gap_frames=30,
            min_track_frames=5,
            max_fill_gap_s=0.2,
            outlier_threshold=3.5,
            smoothing_window_s=0.2,
        ),
    },
    "accurate": {
        "pose_model": "full",
        "warmup_frames": 30,
        "min_detection_confidence": 0.6,
        "min_presence_confidence": 0.6,
        "min_tracking_confidence": 0.6,
        "analysis": AnalysisParams(
            min_visibility=0.6,
            max_track_gap_frames=45,
            min_track_frames=10,
            max_fill_gap_s=0.25,
            outlier_threshold=3.0,
            smoothing_window_s=0.25,
        ),
    },
}
DEFAULT_QUALITY = "balanced"


@dataclass(frozen=True)
class PipelineConfig:
    """Every setting of a run. ``None`` means: take it from the quality preset
    (model, warm-up) or choose automatically (workers, batch size)."""

    output_dir: str = "output"
    models_dir: str = "models"
    quality: str = DEFAULT_QUALITY
    pose_model: str | None = None  # preset name (lite, full) or path to a .task file
    num_poses: int = 1
    workers: int | None = None  # Dask worker processes; None = CPU cores
    batch_size: int | None = None  # frames per Dask task; None = auto
    warmup_frames: int | None = None
    sample_fps: float | None = None
    memory_limit: float = 0.4  # fraction of system RAM for the whole run
    dask_address: str | None = None
    ray_address: str | None = None
    analyzers: int | None = None  # Ray analyzer actors; None = auto
    chunk_retries: int = 2
    sport_type: str = DEFAULT_SPORT
    render_video: bool = True  # the annotated video in output_dir
    report: bool = True  # the HTML report in output_dir
    analysis: AnalysisParams | None = None
    force: bool = False  # ignore the work folders of earlier runs (recompute everything)
    llm_data_dir: str | None = "llm_training_data"  # per-video LLM examples; None = none

    def __post_init__(self) -> None:
        if self.quality not in QUALITY_PRESETS:
            raise ConfigError(f"unknown quality '{self.quality}' (choose from {', '.join(QUALITY_PRESETS)})")
        if self.num_poses < 1:
            raise ConfigError(f"num_poses must be >= 1, got {self.num_poses}")
        if self.workers is not None and self.workers < 1:
            raise ConfigError(f"workers must be >= 1 or auto, got {self.workers}")
        if self.batch_size is not None and self.batch_size < 1:
            raise ConfigError(f"batch_size must be >= 1 or auto, got {self.batch_size}")
        if self.warmup_frames is not None and self.warmup_frames < 0:
            raise ConfigError(f"warmup_frames must be >= 0, got {self.warmup_frames}")
        if self.sample_fps is not None and self.sample_fps <= 0:
            raise ConfigError(f"sample_fps must be > 0, got {self.sample_fps}")
        if not 0.05 <= self.memory_limit <= 0.95:
            raise ConfigError(f"memory_limit is a fraction of system RAM in [0.05, 0.95], got {self.memory_limit}")
        if self.analyzers is not None and self.analyzers < 1:
            raise ConfigError(f"analyzers must be >= 1 or auto, got {self.analyzers}")
        if self.sport_type not in SPORT_PROFILES:
            raise ConfigError(f"unknown sport_type '{self.sport_type}' (choose from {', '.join(SPORT_PROFILES)})")
        if self.chunk_retries < 0:
            raise ConfigError(f"chunk_retries must be >= 0, got {self.chunk_retries}")

    @property
    def output_folders(self) -> list[str]:
        """Folders the run writes to."""
        return [self.output_dir, self.models_dir] + ([self.llm_data_dir] if self.llm_data_dir else [])

    @property
    def preset(self) -> dict:
        return QUALITY_PRESETS[self.quality]

    @property
    def resolved_pose_model(self) -> str:
        return self.pose_model or self.preset["pose_model"]

    @property
    def resolved_warmup_frames(self) -> int:
        return self.preset["warmup_frames"] if self.warmup_frames is None else self.warmup_frames

    @property
    def resolved_workers(self) -> int:
        return self.workers or os.cpu_count() or 1

    @property
    def resolved_analysis(self) -> AnalysisParams:
        return replace(self.analysis or self.preset["analysis"], sport_type=self.sport_type)

    @property
    def resolved_dask_address(self) -> str | None:
        return self.dask_address or os.environ.get("DASK_SCHEDULER_ADDRESS") or None

    @property
    def resolved_ray_address(self) -> str | None:
        return self.ray_address or os.environ.get("RAY_ADDRESS") or None

    def with_overrides(self, **overrides) -> PipelineConfig:
        unknown = set(overrides) - set(self.__dataclass_fields__)
        if unknown:
            raise ConfigError(f"unknown setting(s): {', '.join(sorted(unknown))}")
        return replace(self, **overrides)

    def to_dict(self) -> dict:
        data = asdict(self)
        data["analysis"] = asdict(self.resolved_analysis)
        data["pose_model"] = self.resolved_pose_model
        data["warmup_frames"] = self.resolved_warmup_frames
        data["workers"] = self.resolved_workers if not self.resolved_dask_address else None
        data["dask_address"] = self.resolved_dask_address
        data["ray_address"] = self.resolved_ray_address
        return data


def load_env(path: str | os.PathLike | None = None) -> None:
    """Load ``.env`` (API keys and addresses) without overriding the environment."""
    from dotenv import find_dotenv, load_dotenv

    load_dotenv(dotenv_path=Path(path) if path else find_dotenv(usecwd=True), override=False)
