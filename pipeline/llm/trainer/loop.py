"""The training loop: what to train (:class:`LocalTrainSettings`), what a run did (:class:`TrainRecord`),
:func:`train_local` and its steps, the loss, and the run folder with its training log and record."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import math
import os
import shutil
import time
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pipeline.errors import LLMError
from pipeline.llm.trainer.base_model import build_tiny_random, load_base_model, load_tokenizer, resolve_base_model
from pipeline.llm.trainer.data import IGNORE_INDEX, EncodedData, collate, encode_splits, read_chat_jsonl
from pipeline.llm.trainer.extra import PEFT_DEPRECATION, require_extra, seed_everything
from pipeline.llm.validate import ROLES
from pipeline.storage import write_text

logger = logging.getLogger(__name__)


# --------------------------------------------------------------------------- settings and record


@dataclass(frozen=True)
class LocalTrainSettings:
    """What to train and how. ``max_steps`` overrides ``epochs`` when set."""

    base_model: str = "auto"  # "auto" | "tiny-random" | a local folder | a Hugging Face model name
    epochs: float = 3.0
    max_steps: int | None = None
    learning_rate: float = 2e-4
    batch_size: int = 4
    max_length: int = 1024  # tokens per example; longer examples are truncated and counted
    lora_r: int = 8
    lora_alpha: int = 16
    lora_dropout: float = 0.05
    seed: int = 0

    def validate(self) -> None:
        if self.epochs <= 0 and self.max_steps is None:
            raise LLMError(f"epochs must be > 0 (got {self.epochs})")
        if self.max_steps is not None and self.max_steps < 1:
            raise LLMError(f"max_steps must be >= 1 (got {self.max_steps})")
        if self.learning_rate <= 0:
            raise LLMError(f"learning_rate must be > 0 (got {self.learning_rate})")
        if self.batch_size < 1:
            raise LLMError(f"batch_size must be >= 1 (got {self.batch_size})")
        if self.max_length < 8:
            raise LLMError(f"max_length must be >= 8 tokens (got {self.max_length})")
        if self.lora_r < 1:
            raise LLMError(f"lora_r must be >= 1 (got {self.lora_r})")
        if not 0.0 <= self.lora_dropout < 1.0:
            raise LLMError(f"lora_dropout must be in [0, 1) (got {self.lora_dropout})")


@dataclass
class TrainRecord:
    """Everything a local training run did."""

    adapter_dir: str  # the adapter/ folder inside the run folder
    base_model: str
    base_model_source: str  # "tiny-random" | "path" | "cache" | "hub"
    base_model_note: str | None
    examples: int
    val_examples: int
    truncated_examples: int
    steps: int
    epochs: float
    trainable_parameters: int
    total_parameters: int
    first_loss: float
    last_loss: float
    train_eval_loss_before: float
    train_eval_loss_after: float
    val_loss_before: float | None
    val_loss_after: float | None
    elapsed_s: float
    log_path: str
    settings: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class _Plan:
    """How many optimiser steps, how many of them warm up, and how many batches make an epoch."""

    steps: int
    warmup: int
    batches_per_epoch: int

    @classmethod
    def of(cls, examples: int, settings: LocalTrainSettings) -> _Plan:
        batches_per_epoch = math.ceil(examples / settings.batch_size)
        steps = settings.max_steps or max(1, math.ceil(settings.epochs * batches_per_epoch))
        warmup = max(1, round(0.05 * steps)) if steps > 1 else 0
        return cls(steps, warmup, batches_per_epoch)

    def factor(self, step: int) -> float:
        """The learning-rate factor: linear warm-up, then linear decay to zero."""
        if step < self.warmup:
            return (step + 1) / self.warmup
        return max(0.0, (self.steps - step) / max(1, self.steps - self.warmup))


# --------------------------------------------------------------------------- loss


def loss_sum(model: Any, batch: dict[str, Any]) -> tuple[Any, int]:
    """Summed next-token cross entropy over the labelled tokens, and their count."""
    import torch.nn.functional as F

    logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
    logits = logits[:, :-1, :].float()
    labels = batch["labels"][:, 1:]
    loss = F.cross_entropy(
        logits.reshape(-1, logits.shape[-1]), labels.reshape(-1), ignore_index=IGNORE_INDEX, reduction="sum"
    )
    return loss, int((labels != IGNORE_INDEX).sum())


def mean_loss(model: Any, examples: list[dict], pad_id: int, batch_size: int) -> float:
    """Mean loss per assistant token over ``examples`` in eval mode (no dropout)."""
    import torch

    was_training = model.training
    model.eval()
    total, count = 0.0, 0
    with torch.no_grad():
        for start in range(0, len(examples), batch_size):
            loss, tokens = loss_sum(model, collate(examples[start : start + batch_size], pad_id))
            total += float(loss)
            count += tokens
    model.train(was_training)
    return total / max(count, 1)


# --------------------------------------------------------------------------- run folder


@contextmanager
def _no_progress_bars() -> Iterator[None]:
    """Silence transformers' own progress bars (saving shards) for a moment; the caller shows progress."""
    from transformers.utils import logging as hf_logging

    enabled = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        if enabled:
            hf_logging.enable_progress_bar()


def _file_hash(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()[:8]


def _run_folder(output_root: Path, train_hash: str) -> tuple[Path, Path]:
    """The final run folder (not yet existing) and the temporary folder to write it in."""
    stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
    base = f"local-{stamp}-{train_hash}"
    final = output_root / base
    suffix = 1
    while final.exists():
        suffix += 1
        final = output_root / f"{base}-{suffix}"
    temp = output_root / f".{final.name}.tmp-{os.getpid()}"
    return final, temp


def _write_json(path: Path, data: Any) -> None:
    write_text(path, json.dumps(data, indent=2) + "\n")


# --------------------------------------------------------------------------- training


def _read_data(train_path: Path, val_path: str | os.PathLike | None) -> tuple[list[list[dict]], list[list[dict]]]:
    """The training conversations (at least one) and the validation conversations (maybe none)."""
    train = read_chat_jsonl(train_path)
    if not train:
        raise LLMError(f"training data {train_path} holds no examples")
    val: list[list[dict]] = []
    if val_path is not None and str(val_path):
        val = read_chat_jsonl(Path(val_path))
    return train, val


def _model_and_tokenizer(
    name_or_path: str, source: str, train: list[list[dict]], seed: int, temp: Path
) -> tuple[Any, Any, int]:
    """The base model, its tokenizer (saved in the run folder) and the padding token id.

    The tiny random model is built from the training texts and saved as ``base/``, so the adapter reloads offline.
    """
    if source == "tiny-random":
        texts = [message["content"] for messages in train for message in messages]
        texts += list(ROLES)
        model, tokenizer = build_tiny_random(texts, seed=seed)
        with _no_progress_bars():
            model.save_pretrained(temp / "base")
    else:
        model, tokenizer = load_base_model(name_or_path, source), load_tokenizer(name_or_path, source)
    tokenizer.save_pretrained(temp / "tokenizer")
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else (tokenizer.eos_token_id or 0)
    return model, tokenizer, pad_id


def _add_lora(model: Any, settings: LocalTrainSettings) -> tuple[Any, int, int]:
    """The model wrapped with fresh LoRA layers on all linear modules, and its trainable and total parameters."""
    from peft import LoraConfig, TaskType, get_peft_model

    seed_everything(settings.seed)
    lora = LoraConfig(
        task_type=TaskType.CAUSAL_LM,
        r=settings.lora_r,
        lora_alpha=settings.lora_alpha,
        lora_dropout=settings.lora_dropout,
        target_modules="all-linear",
        bias="none",
    )
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=PEFT_DEPRECATION, category=FutureWarning)
        model = get_peft_model(model, lora)
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    total = sum(p.numel() for p in model.parameters())
    return model, trainable, total


def _evaluate(model: Any, data: EncodedData, pad_id: int, batch_size: int, step: int) -> dict:
    """The ``eval`` line of the training log: mean loss on the training and (if any) validation examples."""
    train_loss = mean_loss(model, data.examples, pad_id, batch_size)
    val_loss = mean_loss(model, data.val_examples, pad_id, batch_size) if data.val_examples else None
    return {"type": "eval", "step": step, "train_loss": train_loss, "val_loss": val_loss}


def _optimise(
    model: Any,
    examples: list[dict],
    pad_id: int,
    settings: LocalTrainSettings,
    plan: _Plan,
    log_lines: list[dict],
    progress: Callable[[dict], None] | None,
) -> list[float]:
    """Run the optimiser steps with AdamW, gradient clipping and the warm-up/decay schedule; return the losses.

    Each epoch takes the examples in a new shuffled order, in batches of ``batch_size`` (the last may be short).
    Every step appends a ``step`` line to ``log_lines`` and hands a copy to ``progress``.
    """
    import torch

    optimizer = torch.optim.AdamW(
        [p for p in model.parameters() if p.requires_grad], lr=settings.learning_rate, weight_decay=0.0
    )
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, plan.factor)
    generator = torch.Generator().manual_seed(settings.seed)
    queue: list[list[int]] = []  # batches of example indices; a new shuffle per epoch, short last batch
    losses: list[float] = []
    model.train()
    for step in range(1, plan.steps + 1):
        if not queue:
            order = torch.randperm(len(examples), generator=generator).tolist()
            queue = [order[i : i + settings.batch_size] for i in range(0, len(order), settings.batch_size)]
        indices = queue.pop(0)
        summed, tokens = loss_sum(model, collate([examples[i] for i in indices], pad_id))
        loss = summed / max(tokens, 1)
        if not torch.isfinite(loss):
            raise LLMError(f"the training loss became {loss.item()} at step {step}: lower the learning rate")
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        learning_rate = optimizer.param_groups[0]["lr"]
        optimizer.step()
        scheduler.step()
        losses.append(loss.item())
        line = {
            "type": "step",
            "step": step,
            "steps": plan.steps,
            "epoch": round(step / plan.batches_per_epoch, 4),
            "loss": losses[-1],
            "learning_rate": learning_rate,
        }
        log_lines.append(line)
        if progress is not None:
            progress(dict(line))
    return losses


def _train_in(
    temp: Path,
    final: Path,
    started: float,
    train_path: Path,
    conversations: tuple[list[list[dict]], list[list[dict]]],
    base: tuple[str, str, str | None],
    settings: LocalTrainSettings,
    progress: Callable[[dict], None] | None,
) -> TrainRecord:
    """Train in the temporary run folder ``temp`` and write everything the final folder ``final`` will hold."""
    name_or_path, source, note = base
    model, tokenizer, pad_id = _model_and_tokenizer(name_or_path, source, conversations[0], settings.seed, temp)
    data = encode_splits(tokenizer, *conversations, settings.max_length, train_path)
    model, trainable, total = _add_lora(model, settings)
    plan = _Plan.of(len(data.examples), settings)
    logger.info(
        "training %s (%s) with LoRA r=%d: %d examples, %d steps, %d of %d parameters trainable",
        name_or_path, source, settings.lora_r, len(data.examples), plan.steps, trainable, total,
    )  # fmt: skip

    eval_batch = max(1, settings.batch_size)
    before = _evaluate(model, data, pad_id, eval_batch, step=0)
    log_lines: list[dict] = [data.log_line(settings.max_length), before]
    logger.info("loss before training: train %.4f, val %s", before["train_loss"], before["val_loss"])
    losses = _optimise(model, data.examples, pad_id, settings, plan, log_lines, progress)
    after = _evaluate(model, data, pad_id, eval_batch, step=plan.steps)
    log_lines.append(after)
    logger.info("loss after training: train %.4f, val %s", after["train_loss"], after["val_loss"])

    # The embeddings are never trained or resized; saying so spares peft a hub look-up of the base config.
    model.save_pretrained(temp / "adapter", save_embedding_layers=False)
    write_text(temp / "training_log.jsonl", "".join(json.dumps(line) + "\n" for line in log_lines))
    record = TrainRecord(
        adapter_dir=str(final / "adapter"),
        base_model=name_or_path,
        base_model_source=source,
        base_model_note=note,
        examples=len(data.examples),
        val_examples=len(data.val_examples),
        truncated_examples=data.truncated,
        steps=plan.steps,
        epochs=round(plan.steps / plan.batches_per_epoch, 4),
        trainable_parameters=trainable,
        total_parameters=total,
        first_loss=losses[0],
        last_loss=losses[-1],
        train_eval_loss_before=before["train_loss"],
        train_eval_loss_after=after["train_loss"],
        val_loss_before=before["val_loss"],
        val_loss_after=after["val_loss"],
        elapsed_s=round(time.monotonic() - started, 3),
        log_path=str(final / "training_log.jsonl"),
        settings=dataclasses.asdict(settings),
    )
    _write_json(temp / "record.json", record.to_dict())
    return record


def train_local(
    train_path: str | os.PathLike,
    val_path: str | os.PathLike | None,
    output_root: str | os.PathLike,
    settings: LocalTrainSettings = LocalTrainSettings(),  # noqa: B008 - frozen dataclass, immutable default
    progress: Callable[[dict], None] | None = None,
) -> TrainRecord:
    """LoRA-train a causal LM on the chat JSONL ``train_path`` on the CPU; return what the run did.

    ``val_path`` (optional, may be empty) is evaluated before and after training. ``progress`` receives one dict per
    optimiser step (``type``, ``step``, ``steps``, ``epoch``, ``loss``, ``learning_rate``). The same dicts go to
    ``training_log.jsonl``, after a ``data`` line (example counts, truncated and dropped examples) and between two
    ``eval`` lines (mean loss per assistant token on the training and validation sets, before and after).
    """
    require_extra()
    settings.validate()
    import torch

    started = time.monotonic()
    train_path, output_root = Path(train_path), Path(output_root)
    conversations = _read_data(train_path, val_path)
    base = resolve_base_model(settings.base_model)
    threads_before = torch.get_num_threads()
    torch.set_num_threads(max(1, min(threads_before, os.cpu_count() or 1)))
    output_root.mkdir(parents=True, exist_ok=True)
    final, temp = _run_folder(output_root, _file_hash(train_path))
    try:
        temp.mkdir(parents=True)
        record = _train_in(temp, final, started, train_path, conversations, base, settings, progress)
        temp.rename(final)
    except BaseException:
        shutil.rmtree(temp, ignore_errors=True)
        raise
    finally:
        torch.set_num_threads(threads_before)
    logger.info("adapter written to %s", final)
    return record
