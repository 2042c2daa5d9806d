"""The LLM step of a run, after the videos: teacher feedback, the dataset, training.

``check_ready`` runs before any video is processed (missing keys and bad
combinations are errors then, not after an hour of pose estimation);
``run_llm_stage`` runs after the batch and says what it did and what is missing.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from pipeline.errors import ConfigError, LLMError
from pipeline.llm.build import DEFAULT_VAL_FRACTION, assemble_dataset, read_jsonl, video_files, write_jsonl
from pipeline.llm.openai_finetune import DEFAULT_OPENAI_BASE_MODEL, openai_finetune
from pipeline.llm.teachers import DEFAULT_MODELS, KEY_VARIABLES, PROVIDERS, Teacher, TeacherSettings

logger = logging.getLogger(__name__)

TRAINERS = ("auto", "local", "openai")
KEYLESS = "no-key"  # sent to an OpenAI-compatible server given by --llm_base_url when no key is set


@dataclass(frozen=True)
class LLMOptions:
    data_dir: str = "llm_training_data"
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
        unknown = set(self.teachers) - set(PROVIDERS)
        if unknown:
            raise ConfigError(f"unknown teacher(s) {', '.join(sorted(unknown))}")
        if self.trainer not in TRAINERS:
            raise ConfigError(f"llm_trainer: expected one of {', '.join(TRAINERS)}, got {self.trainer!r}")
        if not 0 <= self.val_fraction < 1:
            raise ConfigError(f"val_fraction must be in [0, 1), got {self.val_fraction}")

    @property
    def resolved_trainer(self) -> str:
        if self.trainer != "auto":
            return self.trainer
        return "openai" if "openai" in self.teachers and not self.base_url else "local"

    def model_for(self, provider: str) -> str:
        """``--llm_model``: one value for the one teacher in use; with both, a claude-* name goes to Claude."""
        if not self.models:
            return DEFAULT_MODELS[provider]
        if len(self.teachers) <= 1:
            if len(self.models) > 1:
                raise ConfigError(f"--llm_model given {len(self.models)} times for one teacher")
            return self.models[0]
        mine = [m for m in self.models if (m.startswith("claude") == (provider == "claude"))]
        if len(mine) > 1:
            raise ConfigError(f"--llm_model: {len(mine)} models for {provider} ({', '.join(mine)})")
        return mine[0] if mine else DEFAULT_MODELS[provider]

    def api_key(self, provider: str) -> str | None:
        key = self.env.get(KEY_VARIABLES[provider]) or None
        if key is None and provider == "openai" and self.base_url:
            return KEYLESS
        return key


def check_ready(options: LLMOptions) -> list[str]:
    """Errors that must stop the run before any video (ConfigError), and notes to print now."""
    notes = []
    for provider in options.teachers:
        options.model_for(provider)
        if options.api_key(provider) is None:
            variable = KEY_VARIABLES[provider]
            flag = "--use_openai" if provider == "openai" else "--use_claude"
            raise ConfigError(f"{flag} needs {variable}: set it in .env or the environment")
    if options.train:
        trainer = options.resolved_trainer
        if trainer == "openai" and options.api_key("openai") is None:
            raise ConfigError("training on OpenAI needs OPENAI_API_KEY: set it in .env or the environment")
        if "claude" in options.teachers:
            where = "with OpenAI" if trainer == "openai" else "locally"
            notes.append(
                f"Claude has no public fine-tuning API: Claude writes training data, the model is trained {where}"
            )
        if trainer == "local":
            from pipeline.llm.trainer import TRAIN_EXTRA, missing_packages

            missing = missing_packages()
            if missing:
                notes.append(
                    f"local training needs the training extra (pip install -r {TRAIN_EXTRA}; missing: "
                    f"{', '.join(missing)}): the dataset will be written and training skipped"
                )
    elif options.trainer != "auto":
        notes.append("--llm_trainer has no effect without --train_llm")
    return notes


@dataclass
class StageResult:
    ok: bool = True
    lines: list[str] = field(default_factory=list)
    card: dict | None = None
    training: dict | None = None

    def fail(self, line: str) -> None:
        self.ok = False
        self.lines.append(line)


def _synthetic(options: LLMOptions, videos: list[str], sport: str, say, result: StageResult) -> dict:
    """Teacher answers for every rule-based example of ``videos``; writes ``videos/<name>.<teacher>.jsonl``."""
    folder = Path(options.data_dir)
    examples = {v: read_jsonl(video_files(folder, v)[0]) for v in videos}
    segments = {v: read_jsonl(video_files(folder, v)[1]) for v in videos}
    items = [(seg["id"], ex["messages"][1]["content"]) for v in videos for seg, ex in zip(segments[v], examples[v])]
    usage = {}
    for provider in options.teachers:
        settings = TeacherSettings(
            provider=provider,
            model=options.model_for(provider),
            base_url=options.base_url if provider == "openai" else options.env.get("ANTHROPIC_BASE_URL") or None,
            batch_size=options.batch_size,
            concurrency=options.concurrency,
        )
        teacher = Teacher(settings, options.api_key(provider), folder / ".cache")
        say(f"{teacher.name}: {len(items)} examples to rewrite, {options.batch_size} per request")
        answers = teacher.rewrite(items, sport)
        for video in videos:
            rows = [
                {"messages": ex["messages"][:2] + [{"role": "assistant", "content": answers[seg["id"]]}]}
                for seg, ex in zip(segments[video], examples[video])
                if seg["id"] in answers
            ]
            path = video_files(folder, video, provider)[0]
            write_jsonl(path, rows)
        usage[teacher.name] = teacher.usage.to_dict()
        result.lines.append(f"{teacher.name}: {teacher.usage.line()}")
        if teacher.failures:
            result.fail(
                f"{teacher.name}: {len(teacher.failures)} example(s) got no answer; first: {teacher.failures[0]}"
            )
    return usage


def run_llm_stage(
    videos: list[str], sport: str, options: LLMOptions, settings: dict, say: Callable[[str], None] | None = None
) -> StageResult:
    """Teachers, dataset and training for the videos whose examples were written."""
    say = say or (lambda text: logger.info("%s", text))
    result = StageResult()
    if not videos:
        if options.teachers or options.train:
            result.fail("no LLM training data: no video produced examples")
        return result
    try:
        usage = _synthetic(options, videos, sport, say, result) if options.teachers else {}
        sources = ("rules", *options.teachers)
        card = assemble_dataset(
            options.data_dir, videos, sources, options.val_fraction, settings, extras={"synthetic": usage}
        )
    except LLMError as exc:
        result.fail(f"LLM data: {exc}")
        return result
    result.card = card
    splits = card["splits"]
    result.lines.append(
        f"LLM data: {splits['train']['examples']} train + {splits['val']['examples']} val examples "
        f"(about {splits['train']['tokens_estimate'] + splits['val']['tokens_estimate']} tokens) "
        f"-> {Path(options.data_dir) / 'dataset_card.md'}"
    )
    if options.train:
        _train(options, card, say, result)
    return result


def _train(options: LLMOptions, card: dict, say, result: StageResult) -> None:
    train, val = card["splits"]["train"]["path"], card["splits"]["val"]["path"]
    Path(options.models_dir).mkdir(parents=True, exist_ok=True)
    if "claude" in options.teachers:
        result.lines.append(
            "Claude has no public fine-tuning API: its examples are in the dataset, training is elsewhere"
        )
    if options.resolved_trainer == "openai":
        try:
            record = openai_finetune(
                train, val, options.models_dir, options.api_key("openai"),
                base_model=options.base_model or DEFAULT_OPENAI_BASE_MODEL, base_url=options.base_url,
                wait=options.wait, poll_s=options.poll_s, progress=say,
            )  # fmt: skip
        except LLMError as exc:
            result.fail(f"training: {exc}")
            return
        result.training = record
        line = f"OpenAI fine-tuning job {record['job_id']}: {record['status']}"
        if record.get("fine_tuned_model"):
            line += f", model {record['fine_tuned_model']}"
        result.lines.append(line + f" -> {record['record']}")
        if record["status"] in ("failed", "cancelled"):
            result.ok = False
        return
    from pipeline.llm import trainer

    missing = trainer.missing_packages()
    if missing:
        result.fail(
            f"training skipped: local training needs the training extra (pip install -r {trainer.TRAIN_EXTRA}; "
            f"missing: {', '.join(missing)}); the dataset is written"
        )
        return
    try:
        settings = trainer.LocalTrainSettings(base_model=options.base_model or "auto")
        record = trainer.train_local(train, val, options.models_dir, settings, progress=_step_logger(say))
    except LLMError as exc:
        result.fail(f"training: {exc}")
        return
    result.training = record.to_dict()
    if record.base_model_note:
        result.lines.append(f"note: {record.base_model_note}")
    result.lines.append(
        f"local LoRA on {record.base_model}: {record.steps} steps, training loss {record.train_eval_loss_before:.3f} "
        f"-> {record.train_eval_loss_after:.3f} -> {record.adapter_dir}"
    )


def _step_logger(say):
    def progress(step: dict) -> None:
        if "loss" in step and step.get("step", 0) % 10 == 0:
            say(f"training step {step['step']}: loss {step['loss']:.4f}")

    return progress
