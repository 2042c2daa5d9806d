"""The LLM step of a run, after the videos: teacher feedback, the dataset, training.

``check_ready`` runs before any video is processed (missing keys and bad
combinations are errors then, not after an hour of pose estimation);
``run_llm_stage`` runs after the batch and says what it did and what is missing.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

from pipeline import storage
from pipeline.config import TEACHER_KEYS, TRAINERS, LLMSettings, PipelineConfig
from pipeline.errors import ConfigError, LLMError, one_line_reason
from pipeline.llm.build import assemble_dataset, read_jsonl, video_files, write_jsonl
from pipeline.llm.openai_finetune import DEFAULT_OPENAI_BASE_MODEL, openai_finetune
from pipeline.llm.teachers import Teacher, TeacherSettings

logger = logging.getLogger(__name__)

__all__ = ["TRAINERS", "StageResult", "check_ready", "run_llm_stage"]


def check_ready(config: PipelineConfig) -> list[str]:
    """Errors that must stop the run before any video (ConfigError), and notes to print now."""
    options = config.llm
    notes = []
    for provider in options.teachers:
        options.model_for(provider)
        if options.api_key(provider) is None:
            variable = TEACHER_KEYS[provider]
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


def _synthetic(options: LLMSettings, folder: Path, videos: list[str], sport: str, say, result: StageResult) -> dict:
    """Teacher answers for every rule-based example of ``videos``; writes ``videos/<name>.<teacher>.jsonl``."""
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


def run_llm_stage(videos: list[str], config: PipelineConfig, say: Callable[[str], None] | None = None) -> StageResult:
    """Teachers, dataset and training for the videos whose examples were written
    (to ``config.llm_data_dir``). Folders on object storage are worked on in local
    copies (``storage.local_mirror``): what the stage writes is uploaded when it ends."""
    data_dir, models_dir = config.llm_data_dir, config.llm.models_dir
    if storage.is_local(data_dir) and storage.is_local(models_dir):
        return _run_stage(videos, config, say)
    with storage.local_mirror(data_dir) as data, storage.local_mirror(models_dir, fetch=False) as models:
        local = replace(config, llm_data_dir=str(data), llm=replace(config.llm, models_dir=str(models)))
        result = _run_stage(videos, local, say)
    moves = {str(data): data_dir, str(models): models_dir}
    result.lines = _relocated(result.lines, moves)
    result.card, result.training = _relocated(result.card, moves), _relocated(result.training, moves)
    return result


def _relocated(value, moves: dict[str, str]):
    """``value`` (strings in lists and dicts) with each local copy's folder named by its location."""
    if isinstance(value, str):
        for old, new in moves.items():
            value = value.replace(old, new)
        return value
    if isinstance(value, list | tuple):
        return type(value)(_relocated(item, moves) for item in value)
    if isinstance(value, dict):
        return {key: _relocated(item, moves) for key, item in value.items()}
    return value


def _run_stage(videos: list[str], config: PipelineConfig, say: Callable[[str], None] | None) -> StageResult:
    say = say or (lambda text: logger.info("%s", text))
    options, sport, folder = config.llm, config.sport_type, Path(config.llm_data_dir)
    settings = {"sport_type": sport, "quality": config.quality, "pose_model": config.resolved_pose_model}
    result = StageResult()
    if not videos:
        if options.teachers or options.train:
            result.fail("no LLM training data: no video produced examples")
        return result
    try:
        usage = _synthetic(options, folder, videos, sport, say, result) if options.teachers else {}
        sources = ("rules", *options.teachers)
        card = assemble_dataset(folder, videos, sources, options.val_fraction, settings, extras={"synthetic": usage})
    except (LLMError, OSError) as exc:
        result.fail(f"LLM data: {one_line_reason(exc)}")
        return result
    result.card = card
    splits = card["splits"]
    result.lines.append(
        f"LLM data: {splits['train']['examples']} train + {splits['val']['examples']} val examples "
        f"(about {splits['train']['tokens_estimate'] + splits['val']['tokens_estimate']} tokens) "
        f"-> {folder / 'dataset_card.md'}"
    )
    if options.train:
        _train(options, card, say, result)
    return result


def _train(options: LLMSettings, card: dict, say, result: StageResult) -> None:
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
            result.fail(f"training: {one_line_reason(exc)}")
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
        result.fail(f"training: {one_line_reason(exc)}")
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
