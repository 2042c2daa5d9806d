"""Every setting of a run, as frozen dataclasses of plain values.

This module is the bottom of the settings layer: it imports nothing from the
stages, and the stages read their part of it (the analysis its
``AnalysisParams``, the LLM step its ``LLMSettings``). Each name is checked
once, here: quality presets, sport types, teachers and trainers.
"""

from __future__ import annotations

import math
import os
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path

from pipeline.errors import ConfigError

# -- names checked in one place -------------------------------------------------
SPORT_TYPES: tuple[str, ...] = ("general", "jump", "squat", "jumping_jacks", "running", "weightlifting")
DEFAULT_SPORT = "general"
TEACHERS: tuple[str, ...] = ("openai", "claude")
TEACHER_KEYS = {"openai": "OPENAI_API_KEY", "claude": "ANTHROPIC_API_KEY"}
DEFAULT_TEACHER_MODELS = {"openai": "gpt-4.1-mini", "claude": "claude-haiku-4-5"}
TRAINERS: tuple[str, ...] = ("auto", "local", "openai")
KEYLESS = "no-key"  # sent to an OpenAI-compatible server given by --llm_base_url when no key is set
DEFAULT_VAL_FRACTION = 0.2
MEMORY_LIMIT_RANGE = (0.05, 0.95)  # --memory_limit: the share of system RAM a run may take
SMOOTHING_FILTERS: tuple[str, ...] = ("savgol", "butterworth", "none")  # --filter
TABLE_FORMATS: tuple[str, ...] = ("parquet", "csv", "none")  # --tables
PERSON_HEIGHT_RANGE = (0.5, 2.6)  # --person_height, metres: a child to the tallest athlete


def check_sport(sport_type: str) -> str:
    if sport_type not in SPORT_TYPES:
        raise ConfigError(f"unknown sport_type '{sport_type}' (choose from {', '.join(SPORT_TYPES)})")
    return sport_type


def check_finite(settings) -> None:
    """Every number of a settings dataclass is finite: NaN passes every comparison
    a range check makes, and infinity ends up as ``Infinity`` in JSON outputs."""
    for item in fields(settings):
        value = getattr(settings, item.name)
        if isinstance(value, float) and not math.isfinite(value):
            raise ConfigError(f"{item.name} must be a finite number, got {value}")


def check_height(metres: float) -> float:
    low, high = PERSON_HEIGHT_RANGE
    if not math.isfinite(metres) or not low <= metres <= high:
        hint = " (in metres: 1.78, not 178)" if metres > high else ""
        raise ConfigError(f"person height must be between {low} and {high} m, got {metres:g}{hint}")
    return metres


@dataclass(frozen=True)
class PersonHeight:
    """One row of a ``--person_height`` CSV: a video (file name or stem), optionally one
    person id in it (None: every person of the video without a row of their own)."""

    video: str
    height_m: float
    person: int | None = None

    def __post_init__(self) -> None:
        check_height(self.height_m)
        if self.person is not None and self.person < 0:
            raise ConfigError(f"person_height: person ids start at 0, got {self.person}")


# -- analysis -------------------------------------------------------------------
@dataclass(frozen=True)
class EventParams:
    """Thresholds of the event detection (``pipeline.analysis.events`` explains each)."""

    still_speed_bh_s: float = 0.35
    min_support_s: float = 0.08
    apex_max_s: float = 0.3  # a still run higher than both neighbours and shorter than this is an apex
    contact_tolerance_bh: float = 0.02
    min_rise_bh: float = 0.03
    same_level_bh: float = 0.05
    min_flight_s: float = 0.1
    max_flight_s: float = 1.5
    max_contact_s: float = 1.0
    rep_min_period_s: float = 0.4
    rep_relative_prominence: float = 0.4

    def __post_init__(self) -> None:
        check_finite(self)


@dataclass(frozen=True)
class AnalysisParams:
    """Analysis settings; the ``--quality`` preset fills them (``sport_type`` comes from the run)."""

    min_visibility: float = 0.5  # below it a landmark does not contribute to an angle
    max_track_gap_frames: int = 30  # a person unseen longer may be replaced by another
    min_track_frames: int = 5  # shorter tracks are reported but not counted or analysed
    max_fill_gap_s: float = 0.2  # dropouts up to this long are interpolated
    outlier_window: int = 7  # samples, Hampel filter
    outlier_threshold: float = 3.5  # robust sigmas
    smoothing_window_s: float = 0.2  # Savitzky-Golay window
    smoothing_order: int = 2
    smoothing_filter: str = "savgol"  # --filter: savgol, butterworth (zero-phase low-pass) or none
    cutoff_hz: float = 6.0  # --filter_cutoff: the Butterworth filter's cutoff
    butterworth_order: int = 4  # of the filter run once each way (zero-phase)
    events: EventParams = field(default_factory=EventParams)
    sport_type: str = DEFAULT_SPORT

    def __post_init__(self) -> None:
        check_finite(self)
        check_sport(self.sport_type)
        if self.smoothing_filter not in SMOOTHING_FILTERS:
            raise ConfigError(f"unknown filter '{self.smoothing_filter}' (choose from {', '.join(SMOOTHING_FILTERS)})")
        if self.cutoff_hz <= 0:
            raise ConfigError(f"filter cutoff must be > 0 Hz, got {self.cutoff_hz}")
        if self.butterworth_order < 1:
            raise ConfigError(f"butterworth_order must be >= 1, got {self.butterworth_order}")


# -- quality presets ----------------------------------------------------------------
@dataclass(frozen=True)
class QualityPreset:
    """What one ``--quality`` value sets. Every value can be read in the pose JSON's "settings" block."""

    name: str
    pose_model: str  # a model preset name (pipeline.pose.models.MODEL_PRESETS)
    warmup_frames: int
    min_detection_confidence: float
    min_presence_confidence: float
    min_tracking_confidence: float
    analysis: AnalysisParams


# "--num_poses auto": the landmarker's person slots. Measured (docs/benchmarks.md, bench/reacquire.py):
# once there are more slots than people the detector runs on every frame, a fixed cost (lite model,
# sample clip: 13 ms a frame for 1 slot, 25 for 2, 33 for 4, 34 for 6, 35 for 8), and each person
# tracked adds about 11 ms. MediaPipe's detector sees the whole frame at 224x224 and finds nobody
# under about a third of the frame's height, so six people at a size it detects fill a frame.
AUTO_NUM_POSES = 6


def _check_num_poses(value) -> int | str:
    """``value`` as a number of person slots (>= 1) or "auto"; ConfigError otherwise."""
    if value == "auto":
        return value
    number = int(value) if isinstance(value, str) and value.strip().lstrip("+-").isdigit() else value
    if isinstance(number, bool) or not isinstance(number, int) or number < 1:
        raise ConfigError(f"num_poses must be an integer >= 1 or 'auto', got {value!r}")
    return number


# One table: what each --quality preset sets.
QUALITY_PRESETS: dict[str, QualityPreset] = {
    preset.name: preset
    for preset in (
        QualityPreset(
            name="fast",
            pose_model="lite",
            warmup_frames=0,
            min_detection_confidence=0.5,
            min_presence_confidence=0.5,
            min_tracking_confidence=0.5,
            analysis=AnalysisParams(
                min_visibility=0.3,
                max_track_gap_frames=15,
                min_track_frames=3,
                max_fill_gap_s=0.15,
                outlier_threshold=4.0,
                smoothing_window_s=0.15,
            ),
        ),
        QualityPreset(
            name="balanced",
            pose_model="full",
            warmup_frames=0,
            min_detection_confidence=0.5,
            min_presence_confidence=0.5,
            min_tracking_confidence=0.5,
            analysis=AnalysisParams(
                min_visibility=0.5,
                max_track_gap_frames=30,
                min_track_frames=5,
                max_fill_gap_s=0.2,
                outlier_threshold=3.5,
                smoothing_window_s=0.2,
            ),
        ),
        QualityPreset(
            name="accurate",
            pose_model="full",
            warmup_frames=0,
            min_detection_confidence=0.6,
            min_presence_confidence=0.6,
            min_tracking_confidence=0.6,
            analysis=AnalysisParams(
                min_visibility=0.6,
                max_track_gap_frames=45,
                min_track_frames=10,
                max_fill_gap_s=0.25,
                outlier_threshold=3.0,
                smoothing_window_s=0.25,
                smoothing_filter="butterworth",
                cutoff_hz=6.0,
            ),
        ),
    )
}
DEFAULT_QUALITY = "balanced"


# -- the LLM step ----------------------------------------------------------------------
@dataclass(frozen=True)
class LLMSettings:
    """Teachers and training, run after the videos (``pipeline.llm.stage``).

    The examples themselves are an output of each video (``PipelineConfig.llm_data_dir``).
    """

    teachers: tuple[str, ...] = ()  # "openai", "claude"
    models: tuple[str, ...] = ()  # --llm_model values
    base_url: str | None = None  # an OpenAI-compatible server instead of api.openai.com
    batch_size: int = 8
    concurrency: int = 4
    train: bool = False
    trainer: str = "auto"  # auto: OpenAI with --use_openai (and no --llm_base_url), else local
    base_model: str | None = None  # fine-tuning base: an OpenAI model, or a local path / Hugging Face name
    wait: bool = True
    poll_s: float = 15.0
    models_dir: str = "llm_models"
    val_fraction: float = DEFAULT_VAL_FRACTION
    env: dict = field(default_factory=lambda: dict(os.environ), repr=False, compare=False)

    def __post_init__(self) -> None:
        check_finite(self)
        unknown = set(self.teachers) - set(TEACHERS)
        if unknown:
            raise ConfigError(f"unknown teacher(s) {', '.join(sorted(unknown))}")
        if self.trainer not in TRAINERS:
            raise ConfigError(f"llm_trainer: expected one of {', '.join(TRAINERS)}, got {self.trainer!r}")
        if not 0 <= self.val_fraction < 1:
            raise ConfigError(f"val_fraction must be in [0, 1), got {self.val_fraction}")
        if self.batch_size < 1 or self.concurrency < 1:
            raise ConfigError("llm batch size and concurrency must be >= 1")
        if self.poll_s <= 0:
            raise ConfigError(f"poll_s must be > 0, got {self.poll_s}")

    @property
    def active(self) -> bool:
        """Something beyond the rule-based examples was asked for."""
        return bool(self.teachers) or self.train

    @property
    def resolved_trainer(self) -> str:
        if self.trainer != "auto":
            return self.trainer
        return "openai" if "openai" in self.teachers and not self.base_url else "local"

    def model_for(self, provider: str) -> str:
        """``--llm_model``: one value for the one teacher in use; with both, a claude-* name goes to Claude."""
        if not self.models:
            return DEFAULT_TEACHER_MODELS[provider]
        if len(self.teachers) <= 1:
            if len(self.models) > 1:
                raise ConfigError(f"--llm_model given {len(self.models)} times for one teacher")
            return self.models[0]
        mine = [m for m in self.models if (m.startswith("claude") == (provider == "claude"))]
        if len(mine) > 1:
            raise ConfigError(f"--llm_model: {len(mine)} models for {provider} ({', '.join(mine)})")
        return mine[0] if mine else DEFAULT_TEACHER_MODELS[provider]

    def api_key(self, provider: str) -> str | None:
        key = self.env.get(TEACHER_KEYS[provider]) or None
        if key is None and provider == "openai" and self.base_url:
            return KEYLESS
        return key


# -- the run -----------------------------------------------------------------------------
# The settings a finished video's outputs depend on (its output key). Anything
# else (workers, addresses, memory, retries, an automatic chunk size) changes how
# the outputs are made, not what they are.
OUTPUT_KEY_FIELDS = (
    "output_dir",
    "models_dir",
    "quality",
    "pose_model",
    "num_poses",
    "batch_size",
    "warmup_frames",
    "sample_fps",
    "sport_type",
    "render_video",
    "video_height",
    "report",
    "analysis",
    "llm_data_dir",
    "tables",
    "opensim",
)

# The smallest --video_height: below it the drawing's labels are unreadable.
MIN_VIDEO_HEIGHT = 120


@dataclass(frozen=True)
class PipelineConfig:
    """Every setting of a run. ``None`` means: take it from the quality preset
    (model, warm-up) or choose automatically (workers, batch size)."""

    output_dir: str = "output"
    models_dir: str = "models"
    quality: str = DEFAULT_QUALITY
    pose_model: str | None = None  # preset name (lite, full) or path to a .task file
    num_poses: int | str = "auto"  # most people tracked per frame, or "auto" (AUTO_NUM_POSES)
    workers: int | None = None  # Dask worker processes; None = as many as the memory budget holds
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
    video_height: int | None = None  # the annotated video scaled down to this height; None = the input's size
    report: bool = True  # the HTML report in output_dir
    analysis: AnalysisParams | None = None
    force: bool = False  # ignore the work folders of earlier runs (recompute everything)
    llm_data_dir: str | None = "llm_training_data"  # per-video LLM examples; None = none
    smoothing_filter: str | None = None  # --filter; None = the quality preset's
    filter_cutoff_hz: float | None = None  # --filter_cutoff; None = the quality preset's
    # --person_height: metres, one for every person of every video, or PersonHeight rows (a CSV)
    person_height: float | tuple[PersonHeight, ...] | None = None
    tables: str = "parquet"  # per-frame and event tables in output_dir/tables: parquet, csv or none
    opensim: bool = True  # TRC (markers) and MOT (joint angles) per person in output_dir/opensim
    llm: LLMSettings = field(default_factory=LLMSettings)  # teachers and training after the videos

    def __post_init__(self) -> None:
        check_finite(self)
        if self.quality not in QUALITY_PRESETS:
            raise ConfigError(f"unknown quality '{self.quality}' (choose from {', '.join(QUALITY_PRESETS)})")
        object.__setattr__(self, "num_poses", _check_num_poses(self.num_poses))
        if self.workers is not None and self.workers < 1:
            raise ConfigError(f"workers must be >= 1 or auto, got {self.workers}")
        if self.batch_size is not None and self.batch_size < 1:
            raise ConfigError(f"batch_size must be >= 1 or auto, got {self.batch_size}")
        if self.warmup_frames is not None and self.warmup_frames < 0:
            raise ConfigError(f"warmup_frames must be >= 0, got {self.warmup_frames}")
        if self.sample_fps is not None and self.sample_fps <= 0:
            raise ConfigError(f"sample_fps must be > 0, got {self.sample_fps}")
        low, high = MEMORY_LIMIT_RANGE
        if not low <= self.memory_limit <= high:
            raise ConfigError(f"memory_limit is a fraction of system RAM in [{low}, {high}], got {self.memory_limit}")
        if self.analyzers is not None and self.analyzers < 1:
            raise ConfigError(f"analyzers must be >= 1 or auto, got {self.analyzers}")
        if self.video_height is not None and self.video_height < MIN_VIDEO_HEIGHT:
            raise ConfigError(f"video_height must be >= {MIN_VIDEO_HEIGHT} pixels, got {self.video_height}")
        check_sport(self.sport_type)
        if self.chunk_retries < 0:
            raise ConfigError(f"chunk_retries must be >= 0, got {self.chunk_retries}")
        if self.tables not in TABLE_FORMATS:
            raise ConfigError(f"unknown table format '{self.tables}' (choose from {', '.join(TABLE_FORMATS)})")
        if isinstance(self.person_height, int | float) and not isinstance(self.person_height, bool):
            check_height(float(self.person_height))
        elif self.person_height is not None:
            object.__setattr__(self, "person_height", tuple(self.person_height))
            for row in self.person_height:
                if not isinstance(row, PersonHeight):
                    raise ConfigError(f"person_height: expected metres or PersonHeight rows, got {row!r}")
        self.resolved_analysis  # noqa: B018 - checks --filter and --filter_cutoff
        if self.llm_data_dir is None and self.llm.active:
            raise ConfigError("--no_llm_data cannot be combined with --use_openai, --use_claude or --train_llm")

    @property
    def output_folders(self) -> list[str]:
        """Folders the run writes to."""
        folders = [self.output_dir, self.models_dir] + ([self.llm_data_dir] if self.llm_data_dir else [])
        return folders + ([self.llm.models_dir] if self.llm.train else [])

    @property
    def preset(self) -> QualityPreset:
        return QUALITY_PRESETS[self.quality]

    @property
    def resolved_pose_model(self) -> str:
        return self.pose_model or self.preset.pose_model

    @property
    def resolved_num_poses(self) -> int:
        """Person slots of the landmarker: ``num_poses``, or ``AUTO_NUM_POSES`` for "auto"."""
        return AUTO_NUM_POSES if self.num_poses == "auto" else self.num_poses

    @property
    def resolved_warmup_frames(self) -> int:
        return self.preset.warmup_frames if self.warmup_frames is None else self.warmup_frames

    @property
    def resolved_workers(self) -> int:
        return self.workers or os.cpu_count() or 1

    @property
    def resolved_analysis(self) -> AnalysisParams:
        overrides = {"sport_type": self.sport_type}
        if self.smoothing_filter is not None:
            overrides["smoothing_filter"] = self.smoothing_filter
        if self.filter_cutoff_hz is not None:
            overrides["cutoff_hz"] = self.filter_cutoff_hz
        return replace(self.analysis or self.preset.analysis, **overrides)

    def heights_for(self, video: str) -> tuple[tuple[int, float], ...]:
        """The heights given for the persons of ``video`` (a location): ``(person, metres)``
        pairs, person -1 standing for every person without a height of their own; () if none."""
        if self.person_height is None:
            return ()
        if not isinstance(self.person_height, tuple):
            return ((-1, float(self.person_height)),)
        name = video.rstrip("/").rsplit("/", 1)[-1]
        stem = name.rsplit(".", 1)[0] if "." in name else name
        rows = [row for row in self.person_height if row.video in (name, stem)]
        return tuple(sorted((-1 if row.person is None else row.person, row.height_m) for row in rows))

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
        """The run's pose settings, resolved (the "settings" block of the pose JSON and the report)."""
        skipped = ("llm", "smoothing_filter", "filter_cutoff_hz", "person_height")  # resolved below / per video
        data = {name: getattr(self, name) for name in self.__dataclass_fields__ if name not in skipped}
        data["analysis"] = asdict(self.resolved_analysis)
        data["pose_model"] = self.resolved_pose_model
        data["warmup_frames"] = self.resolved_warmup_frames
        data["max_persons_per_frame"] = self.resolved_num_poses
        data["workers"] = self.resolved_workers if not self.resolved_dask_address else None
        data["dask_address"] = self.resolved_dask_address
        data["ray_address"] = self.resolved_ray_address
        return data

    def output_key(self, batch_size: int) -> dict:
        """What a finished video's outputs depend on: an allow-list of settings
        (``batch_size``: the chunk size the plan used; it counts only when given by the user)."""
        settings = self.to_dict()
        settings["batch_size"] = batch_size if self.batch_size is not None else None
        # A setting that is None unless given counts only when given: work folders of runs made
        # before it existed stay valid.
        optional = ("batch_size", "video_height")
        return {
            name: settings[name] for name in OUTPUT_KEY_FIELDS if settings[name] is not None or name not in optional
        }


def load_env(path: str | os.PathLike | None = None) -> None:
    """Load ``.env`` (API keys and addresses) without overriding the environment."""
    from dotenv import find_dotenv, load_dotenv

    load_dotenv(dotenv_path=Path(path) if path else find_dotenv(usecwd=True), override=False)
