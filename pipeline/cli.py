"""Command line: options -> PipelineConfig -> VideoPipeline; one line per video.

Exit codes: 0 every video succeeded; 1 at least one video failed; 2 bad
invocation or input (unknown option, missing path, no videos); 3 the run could
not start or an engine died (pose model unavailable, Dask or Ray unreachable or
stopped); 130 / 143 interrupted by SIGINT (Ctrl-C) / SIGTERM, after stopping the
engines (a re-run resumes).
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import math
import os
import signal
import sys
import threading
import time
from pathlib import Path

from tqdm import tqdm
from tqdm.contrib.logging import logging_redirect_tqdm

from pipeline import storage
from pipeline.analysis.sports import DEFAULT_SPORT, SPORT_PROFILES
from pipeline.config import (
    MEMORY_LIMIT_RANGE,
    QUALITY_PRESETS,
    SMOOTHING_FILTERS,
    TABLE_FORMATS,
    LLMSettings,
    PipelineConfig,
    load_env,
)
from pipeline.errors import ClusterError, ConfigError, InputError, ModelError, OutputError, PipelineError
from pipeline.inputs import discover_videos, read_person_heights
from pipeline.llm.openai_finetune import DEFAULT_OPENAI_BASE_MODEL
from pipeline.llm.stage import TRAINERS, check_ready
from pipeline.llm.teachers import DEFAULT_MODELS
from pipeline.llm.trainer import DEFAULT_BASE_MODEL
from pipeline.pose.native_log import SHOW_ENV as NATIVE_LOG_ENV
from pipeline.stats import RunStats, process_start_time
from pipeline.storage import ensure_writable, write_json

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_ENVIRONMENT = 0, 1, 2, 3
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)  # exit code 128 + the signal's number: 130, 143
logger = logging.getLogger("pipeline")


def _auto_int(text: str) -> int | None:
    if text == "auto":
        return None
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer or 'auto', got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected an integer >= 1 or 'auto', got {value}")
    return value


def _number(low: float, high: float | None = None, what: str = "a number"):
    """argparse type: a finite float in ``[low, high]`` (``low`` excluded when ``high`` is None)."""

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
        if not math.isfinite(value):
            raise argparse.ArgumentTypeError(f"expected a finite number, got {text!r}")
        if (high is None and value <= low) or (high is not None and not low <= value <= high):
            bounds = f"> {low}" if high is None else f"in [{low}, {high}]"
            raise argparse.ArgumentTypeError(f"expected {what} {bounds}, got {value}")
        return value

    return parse


def _add(parser: argparse.ArgumentParser, name: str, short: str | None = None, **kwargs) -> None:
    """``--snake_case`` option with a ``--dashed-alias`` (and a ``short`` form such as ``-i``)."""
    flags = ([short] if short else []) + [f"--{name}"]
    if "_" in name:
        flags.append(f"--{name.replace('_', '-')}")
    parser.add_argument(*flags, dest=name, **kwargs)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="pipeline.py",
        description="Pose estimation (MediaPipe on Dask) and analysis (Ray) for a folder of sports videos.",
        epilog="Exit codes: 0 all succeeded, 1 a video or a requested LLM step failed, 2 bad invocation or input, "
        "3 engines or model unavailable (or an engine died), 130/143 interrupted by SIGINT/SIGTERM.",
    )
    _add(parser, "input", "-i", action="append", default=[], metavar="PATH",
         help="folder searched recursively for videos (or a video file); repeatable. Every folder and file "
              "option also takes a URL: s3://bucket/prefix, gs://, az://, and https:// for single input files")  # fmt: skip
    _add(parser, "video", "-v", action="append", default=[], metavar="FILE", help="a video file; repeatable")
    _add(parser, "output", "-o", default="output", metavar="DIR",
         help="folder for annotated videos, reports, summary.csv and the work files (default: output)")  # fmt: skip
    _add(parser, "storage_option", action="append", default=[], metavar="KEY=VALUE",
         help="an option of the object store's filesystem, e.g. endpoint_url=http://minio:9000 for an "
              "S3-compatible server (without it, $S3_ENDPOINT_URL when set); repeatable. Credentials come "
              "from the environment, .env or the store's usual configuration, never from here")  # fmt: skip
    _add(parser, "models", "-m", default="models", metavar="DIR",
         help="folder for the pose JSON files (default: models)")  # fmt: skip
    _add(parser, "quality", choices=sorted(QUALITY_PRESETS), default="balanced",
         help="preset for model and analysis parameters: fast (lite model), balanced, accurate (default: balanced)")  # fmt: skip
    _add(parser, "pose_model", metavar="NAME|PATH", default=None,
         help="model preset (lite, full) or path to a MediaPipe pose_landmarker .task file "
              "(default: from --quality)")  # fmt: skip
    _add(parser, "num_poses", default="auto", metavar="N|auto",
         help="most people tracked per frame (default: auto = everyone in view, up to 6)")  # fmt: skip
    _add(parser, "workers", type=_auto_int, default=None, metavar="N|auto",
         help="Dask worker processes of the embedded cluster, one thread each "
              "(default: auto = as many as the memory budget holds, at most one per core)")  # fmt: skip
    _add(parser, "batch_size", type=_auto_int, default=None, metavar="N|auto",
         help="frames per Dask task (default: auto = the batch cut into about two chunks per worker, "
              "aiming at 100 to 1800 frames; a long video gets a multiple of the workers, "
              "a short one a single chunk)")  # fmt: skip
    _add(parser, "warmup_frames", type=int, default=None, metavar="N",
         help="frames tracked before each chunk and not kept (default: from --quality, 0 in every preset: "
              "the previous chunk tracks past its end until this chunk has caught up)")  # fmt: skip
    _add(parser, "sample_fps", type=_number(0), default=None, metavar="FPS",
         help="analyse this many frames per second instead of every frame")  # fmt: skip
    _add(parser, "memory_limit", type=_number(*MEMORY_LIMIT_RANGE, "a fraction of system RAM"), default=0.4, metavar="FRACTION",
         help="share of system RAM for the whole run (default: 0.4)")  # fmt: skip
    _add(parser, "dask_address", default=None, metavar="ADDR",
         help="attach to this Dask scheduler (default: $DASK_SCHEDULER_ADDRESS, else an embedded cluster)")  # fmt: skip
    _add(parser, "ray_address", default=None, metavar="ADDR",
         help="attach to this Ray cluster (default: $RAY_ADDRESS, else an embedded instance)")  # fmt: skip
    _add(parser, "analyzers", type=_auto_int, default=None, metavar="N|auto",
         help="Ray analyzer actors, on an attached Ray cluster at most one per CPU "
              "(default: auto = up to 2, no more than the workers, as many as the memory budget holds)")  # fmt: skip
    _add(parser, "sport_type", choices=sorted(SPORT_PROFILES), default=DEFAULT_SPORT,
         help="which angles and events to highlight and how repetitions are counted "
              f"(default: {DEFAULT_SPORT})")  # fmt: skip
    _add(parser, "person_height", default=None, metavar="METRES|CSV",
         help="the person's height in metres (1.78), or a CSV with the columns video, height_m and "
              "optionally person: positions and speeds are then given in metres and m/s too; without it, "
              "in body heights only")  # fmt: skip
    _add(parser, "filter", choices=SMOOTHING_FILTERS, default=None,
         help="smoothing of the landmarks before angles, speeds and events: savgol (Savitzky-Golay), "
              "butterworth (zero-phase low-pass) or none (default: from --quality; savgol, "
              "butterworth for accurate)")  # fmt: skip
    _add(parser, "filter_cutoff", type=_number(0), default=None, metavar="HZ",
         help="the Butterworth filter's cutoff frequency in Hz (default: from --quality; 6 in every preset)")  # fmt: skip
    _add(parser, "tables", choices=TABLE_FORMATS, default="parquet",
         help="per-frame and event tables in OUTPUT/tables, partitioned by video: parquet, csv or none "
              "(default: parquet)")  # fmt: skip
    _add(parser, "no_opensim", action="store_true",
         help="skip the OpenSim files (TRC markers and MOT joint angles per person, in OUTPUT/opensim)")  # fmt: skip
    _add(parser, "no_video", action="store_true", help="skip the annotated video")
    _add(parser, "video_height", type=int, default=None, metavar="PIXELS",
         help="scale the annotated video down to this height, keeping the aspect ratio (never up; "
              "default: the input's size). On a 1768x994 input, 720 renders in 0.78 of the time "
              "into 0.60 of the bytes")  # fmt: skip
    _add(parser, "no_report", action="store_true", help="skip the HTML report")
    _add(parser, "force", action="store_true",
         help="recompute everything: ignore the finished chunks and videos of earlier runs "
              "(kept in OUTPUT/.work)")  # fmt: skip
    _add(parser, "quiet", action="store_true",
         help="no progress bars and no info log lines: only the per-video and summary lines, "
              "warnings and errors")  # fmt: skip
    _add(parser, "verbose", action="store_true", help="debug logging, and MediaPipe's own log lines")
    _add(parser, "stats", default=None, metavar="FILE",
         help="write the run's timeline as JSON: engine start, first task, every chunk, steady-state frames/s")  # fmt: skip
    llm = parser.add_argument_group("LLM training data and training")
    _add(llm, "llm_data", "-l", default="llm_training_data", metavar="DIR",
         help="folder for the LLM training data (default: llm_training_data)")  # fmt: skip
    _add(llm, "no_llm_data", action="store_true", help="write no LLM training data")
    _add(llm, "use_openai", action="store_true",
         help="an OpenAI model (or the server of --llm_base_url) writes feedback too; key: OPENAI_API_KEY "
              "(none needed with --llm_base_url)")  # fmt: skip
    _add(llm, "use_claude", action="store_true", help="Claude writes feedback too; key: ANTHROPIC_API_KEY")
    _add(llm, "llm_model", action="append", default=[], metavar="NAME",
         help=f"teacher model, by default {DEFAULT_MODELS['openai']} (OpenAI) and {DEFAULT_MODELS['claude']} (Claude); "
              "with both teachers give it once per teacher: claude-* names go to Claude, others to OpenAI")  # fmt: skip
    _add(llm, "llm_base_url", default=None, metavar="URL",
         help="an OpenAI-compatible server (vLLM, Ollama, llama.cpp) for --use_openai "
              "and --llm_trainer openai")  # fmt: skip
    _add(
        llm, "llm_batch_size", type=_auto_int, default=8, metavar="N", help="examples per teacher request (default: 8)"
    )
    _add(llm, "llm_concurrency", type=_auto_int, default=4, metavar="N",
         help="teacher requests in flight (default: 4)")  # fmt: skip
    _add(llm, "train_llm", action="store_true",
         help="fine-tune a model on the data: on OpenAI with --use_openai and no --llm_base_url, else LoRA locally "
              "(requirements-train.txt); see --llm_trainer")  # fmt: skip
    _add(llm, "llm_trainer", choices=TRAINERS, default="auto",
         help="where --train_llm trains "
              "(default: auto = openai with --use_openai and no --llm_base_url, else local)")  # fmt: skip
    _add(llm, "llm_base_model", default=None, metavar="NAME|PATH",
         help=f"model to fine-tune (OpenAI default {DEFAULT_OPENAI_BASE_MODEL}; local default auto: "
              f"{DEFAULT_BASE_MODEL} if cached, else a tiny random test model)")  # fmt: skip
    _add(llm, "no_wait", action="store_true", help="create the OpenAI fine-tuning job and return without waiting")
    _add(llm, "llm_poll_s", type=_number(0), default=15.0, metavar="S",
         help="seconds between status checks of a fine-tuning job (default: 15)")  # fmt: skip
    _add(llm, "llm_models", default="llm_models", metavar="DIR",
         help="folder for trained-model records and adapters (default: llm_models)")  # fmt: skip
    _add(llm, "val_fraction", type=_number(0, 0.9, "a fraction"), default=0.2, metavar="F",
         help="about this share of the videos (chosen by a hash of the name) has its examples "
              "in val.jsonl (default: 0.2)")  # fmt: skip
    return parser


class ProgressDisplay:
    """Progress bars on stderr: one for the batch (frames of every video) and one
    per video while it is being processed, each with frames/s and ETA.
    ``enabled=None`` shows them only on a terminal."""

    def __init__(self, enabled: bool | None = None, file=None) -> None:
        self.enabled = enabled
        self.file = file  # default: stderr
        self.batch = None
        self.bars: dict[str, tqdm] = {}
        self.counted: dict[str, int] = {}

    def __call__(self, event) -> None:
        if self.enabled is False or event.chunks:  # a chunk's status: the stage events carry the frames
            return
        if self.batch is None:
            disable = None if self.enabled is None else False
            self.batch = tqdm(total=0, desc="batch", unit="frame", disable=disable, file=self.file)
        if event.stage == "planned" or event.stage == "skipped":
            self.batch.total += event.frames_total
            self.batch.refresh()
        bar = self.bars.get(event.video)
        if bar is None and event.stage in ("extract", "analyze", "render"):
            bar = self.bars[event.video] = tqdm(
                total=event.frames_total,
                initial=self.counted.get(event.video, 0),
                desc=event.name or event.video,
                unit="frame",
                leave=False,
                disable=self.batch.disable,
                file=self.file,
            )
        delta = event.frames_done - self.counted.get(event.video, 0)
        if delta > 0 or event.stage == "planned":
            self.counted[event.video] = event.frames_done
            self.batch.update(delta)
            if bar is not None:
                bar.update(delta)
        if bar is not None and event.stage in ("analyze", "render"):
            bar.set_postfix_str({"analyze": "analysing", "render": "writing outputs"}[event.stage])
        if event.stage in ("done", "failed", "skipped"):
            if event.stage == "failed":
                self.batch.total -= event.frames_total - self.counted.get(event.video, 0)
                self.batch.refresh()
            if bar is not None:
                bar.close()
                del self.bars[event.video]

    def close(self) -> None:
        for bar in self.bars.values():
            bar.close()
        self.bars.clear()
        if self.batch is not None:
            self.batch.close()


def _storage_options(pairs: list[str]) -> dict[str, str]:
    """``KEY=VALUE`` pairs as a dict (ConfigError for a pair without ``=``)."""
    options = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"--storage_option {pair!r}: expected KEY=VALUE")
        options[key.strip()] = value
    return options


def config_from_args(args: argparse.Namespace) -> PipelineConfig:
    llm = LLMSettings(
        teachers=tuple(p for p, on in (("openai", args.use_openai), ("claude", args.use_claude)) if on),
        models=tuple(args.llm_model),
        base_url=args.llm_base_url,
        batch_size=args.llm_batch_size or 8,
        concurrency=args.llm_concurrency or 4,
        train=args.train_llm,
        trainer=args.llm_trainer,
        base_model=args.llm_base_model,
        wait=not args.no_wait,
        poll_s=args.llm_poll_s,
        models_dir=args.llm_models,
        val_fraction=args.val_fraction,
    )
    return PipelineConfig(
        output_dir=args.output,
        models_dir=args.models,
        quality=args.quality,
        pose_model=args.pose_model,
        num_poses=args.num_poses,
        workers=args.workers,
        batch_size=args.batch_size,
        warmup_frames=args.warmup_frames,
        sample_fps=args.sample_fps,
        memory_limit=args.memory_limit,
        dask_address=args.dask_address,
        ray_address=args.ray_address,
        analyzers=args.analyzers,
        sport_type=args.sport_type,
        render_video=not args.no_video,
        video_height=args.video_height,
        report=not args.no_report,
        force=args.force,
        llm_data_dir=None if args.no_llm_data else args.llm_data,
        smoothing_filter=args.filter,
        filter_cutoff_hz=args.filter_cutoff,
        person_height=_person_height(args.person_height),
        tables=args.tables,
        opensim=not args.no_opensim,
        llm=llm,
    )


def _person_height(value: str | None):
    """``--person_height``: metres, or the location of a CSV of heights."""
    if value is None:
        return None
    try:
        return float(value)
    except ValueError:
        return read_person_heights(value)


class Interrupted(KeyboardInterrupt):
    """SIGINT (Ctrl-C) or SIGTERM: the run stops, its engines are closed, a re-run resumes."""

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum


@contextlib.contextmanager
def _stop_on_signals():
    """SIGINT and SIGTERM raise :class:`Interrupted` in the main thread. A second one while
    the engines are being closed ends the process at once (the engines' watchdog then ends
    their processes)."""
    if threading.current_thread() is not threading.main_thread():
        yield  # signal handlers belong to the main thread
        return
    received: list[int] = []

    def handler(signum, frame) -> None:
        if received:
            os._exit(128 + signum)
        received.append(signum)
        _quiet_engine_shutdown()
        raise Interrupted(signum)

    previous = {signum: signal.signal(signum, handler) for signum in STOP_SIGNALS}
    try:
        yield
    finally:
        for signum, action in previous.items():
            signal.signal(signum, action)


# Loggers of the engines' event loops: stopping a run in the middle of a call into them makes them log
# the cancelled call (with a traceback) as an error; the user stopped it and is told so in one line.
ENGINE_LOOP_LOGGERS = ("tornado.application", "distributed", "distributed.client", "distributed.scheduler",
                       "distributed.core", "distributed.utils")  # fmt: skip


def _quiet_engine_shutdown() -> None:
    if logging.getLogger().getEffectiveLevel() > logging.DEBUG:  # --verbose shows everything
        for name in ENGINE_LOOP_LOGGERS:
            logging.getLogger(name).setLevel(logging.CRITICAL + 1)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["serve"]:  # the job service: its own options (pipeline.py serve --help)
        from pipeline.serve import main as serve

        return serve(argv[1:])
    try:
        with _stop_on_signals():
            return _main(argv)
    except Interrupted as stop:
        print("interrupted: re-run the same command to resume", file=sys.stderr)
        return 128 + stop.signum


def _main(argv: list[str] | None) -> int:
    stats = RunStats()
    stats.mark("process_start", process_start_time())
    stats.mark("cli_start")
    parser = build_parser()
    args = parser.parse_args(argv)
    level = logging.DEBUG if args.verbose else logging.WARNING if args.quiet else logging.INFO
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    if args.verbose:
        os.environ[NATIVE_LOG_ENV] = "1"  # MediaPipe's own log lines too, in the workers this run starts
    else:
        # Dask configures its own loggers when imported; keep them to warnings.
        os.environ.setdefault("DASK_DISTRIBUTED__LOGGING__DISTRIBUTED", "warning")
        os.environ.setdefault("RAY_LOG_TO_STDERR", "0")
        logging.getLogger("ray").setLevel(logging.ERROR)
        logging.getLogger("httpx").setLevel(logging.WARNING)
    for name in ("botocore", "aiobotocore", "s3fs", "fsspec", "urllib3", "aiohttp"):
        # Their debug lines show request headers (a signature, a key id): never in this run's log.
        logging.getLogger(name).setLevel(max(level, logging.WARNING))
    load_env()
    try:
        storage.configure(_storage_options(args.storage_option))
        config = config_from_args(args)
        check_ready(config)  # a missing key stops the run here (the pipeline logs the notes when it starts)
        videos = discover_videos(args.input, args.video)
    except (ConfigError, InputError, OutputError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE

    from pipeline.orchestrator import VideoPipeline

    try:
        for folder in config.output_folders:
            ensure_writable(folder)
    except OutputError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    started = time.perf_counter()
    progress = ProgressDisplay(enabled=False if args.quiet else None)
    try:
        pipeline = VideoPipeline(config, progress=progress, stats=stats)
        pipeline.claim(videos)  # videos another run holds are skipped before the engines start
        with logging_redirect_tqdm(), pipeline:
            logger.info("%d video(s); engines ready in %.1f s", len(videos), time.perf_counter() - started)
            batch = pipeline.process(videos)
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except (ModelError, ClusterError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_ENVIRONMENT
    except PipelineError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_FAILED
    finally:
        progress.close()
    for result in batch.videos:
        print(result.line(), file=sys.stdout if result.success else sys.stderr)
    for line in batch.llm.lines if batch.llm else ():
        print(line)
    failed = len(batch.failed)
    succeeded = sum(r.success for r in batch.videos)
    skipped = sum(r.skipped for r in batch.videos)
    peak = batch.memory.get("peak_bytes", 0) / 1024**3
    budget = batch.memory.get("budget_bytes", 0) / 1024**3
    print(
        f"{succeeded}/{len(batch.videos)} video(s) succeeded in {batch.elapsed_s:.1f} s"
        + (f" ({skipped} complete from an earlier run)" if skipped else "")
        + (f"; {len(batch.held)} held by another run" if batch.held else "")
        + (f"; memory peak {peak:.2f} of {budget:.2f} GiB" if batch.memory else "")
        + (f" (submissions held {batch.memory['pauses']} time(s))" if batch.memory.get("pauses") else "")
        + (f"; failed: {', '.join(r.video for r in batch.failed)}" if failed else "")
    )
    if args.stats:
        stats.mark("finished")
        try:
            write_json(Path(args.stats), stats.to_dict() | {"videos": [r.to_dict() for r in batch.videos]})
        except OSError as exc:
            print(f"error: cannot write the stats to {args.stats}: {exc}", file=sys.stderr)
            return EXIT_FAILED
    return EXIT_OK if batch.success else EXIT_FAILED
