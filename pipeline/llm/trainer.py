"""Local LoRA fine-tuning of a causal language model on chat-format JSONL.

Each line of the training file is ``{"messages": [{"role": "system"|"user"|"assistant", "content": str}, ...]}``,
the format OpenAI fine-tuning accepts. The loss covers the assistant turns only. The heavy packages (torch,
transformers, peft, accelerate) form the optional training extra (``requirements-train.txt``); this module imports
without them and imports them only inside the functions that train or load.

A run writes one folder ``output_root/local-<UTC yyyymmdd-HHMMSS>-<hash of the train file>/`` holding ``adapter/``
(the LoRA weights), ``tokenizer/``, ``base/`` (only for the built-in tiny random model, so the adapter reloads
offline), ``training_log.jsonl`` (one line per optimiser step plus the evaluations) and ``record.json``.
"""

from __future__ import annotations

import dataclasses
import hashlib
import importlib.util
import json
import logging
import math
import os
import random
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
from pipeline.llm.validate import ROLES

logger = logging.getLogger(__name__)

TRAIN_EXTRA = "requirements-train.txt"
TRAIN_PACKAGES = ("torch", "transformers", "peft", "accelerate")
DEFAULT_BASE_MODEL = "HuggingFaceTB/SmolLM2-135M-Instruct"
TINY_RANDOM = "tiny-random"

IGNORE_INDEX = -100

# ChatML, the format of the default base model; the tiny random model uses it too.
CHATML_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)
TINY_SPECIAL_TOKENS = ("<pad>", "<|endoftext|>", "<|im_start|>", "<|im_end|>")
TINY_VOCAB_SIZE = 1024

# peft 0.21 reads a property that transformers 5 deprecated; the warning is not the user's to act on.
_PEFT_DEPRECATION = r".*is_gradient_checkpointing.*"

# Files a snapshot needs to be usable: a config, a tokenizer and weights.
_WEIGHT_PATTERNS = ("*.safetensors", "pytorch_model*.bin")
_DOWNLOAD_PATTERNS = ["*.json", "*.safetensors", "*.txt", "*.model", "*.jinja"]


# --------------------------------------------------------------------------- the extra


def missing_packages() -> list[str]:
    """The packages of the training extra that cannot be imported (checked without importing them)."""
    missing = []
    for name in TRAIN_PACKAGES:
        try:
            found = importlib.util.find_spec(name) is not None
        except (ImportError, ValueError):  # ValueError: sys.modules[name] is None or has no spec
            found = False
        if not found:
            missing.append(name)
    return missing


def require_extra() -> None:
    """Raise :class:`LLMError` naming the install command and the missing packages, if any are missing."""
    missing = missing_packages()
    if missing:
        raise LLMError(
            f"local training needs the training extra: pip install -r {TRAIN_EXTRA} (missing: {', '.join(sorted(missing))})"
        )


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


# --------------------------------------------------------------------------- base model


def _hub_cache_dir() -> str:
    """The Hugging Face hub cache, read from the environment now (huggingface_hub reads it once, at import)."""
    if os.environ.get("HF_HUB_CACHE"):
        return os.environ["HF_HUB_CACHE"]
    if os.environ.get("HF_HOME"):
        return os.path.join(os.environ["HF_HOME"], "hub")
    xdg = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(xdg, "huggingface", "hub")


def _offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "").strip().upper() in {"1", "ON", "YES", "TRUE"}


def _complete_snapshot(folder: Path) -> bool:
    has_config = (folder / "config.json").is_file()
    has_tokenizer = (folder / "tokenizer.json").is_file() or (folder / "tokenizer_config.json").is_file()
    has_weights = any(any(folder.glob(pattern)) for pattern in _WEIGHT_PATTERNS)
    return has_config and has_tokenizer and has_weights


def _cached_snapshot(name: str) -> Path | None:
    """The complete local snapshot of ``name`` in the Hugging Face cache, or None. Never touches the network."""
    from huggingface_hub import snapshot_download

    try:
        folder = Path(snapshot_download(name, cache_dir=_hub_cache_dir(), local_files_only=True))
    except Exception:  # noqa: BLE001 - any failure here means "not usable from the cache"
        return None
    return folder if _complete_snapshot(folder) else None


def _looks_like_path(name: str) -> bool:
    return name.startswith(("/", "./", "../", "~", ".\\")) or name.count("/") > 1 or os.path.isabs(name)


def resolve_base_model(name: str) -> tuple[str, str, str | None]:
    """Decide which base model to train: ``(name_or_path, source, note)``.

    ``source`` is ``"tiny-random"``, ``"path"``, ``"cache"`` or ``"hub"``. ``"auto"`` takes the default model when
    it is complete in the local cache and otherwise the built-in tiny random model, with a note saying so. An explicit
    folder or name that cannot be had raises :class:`LLMError`; there is no silent fallback for it.
    """
    name = (name or "").strip()
    if not name:
        raise LLMError("the base model is empty: pass --llm_base_model auto, tiny-random, a folder or a model name")
    if name == TINY_RANDOM:
        return TINY_RANDOM, "tiny-random", None
    if name == "auto":
        if _cached_snapshot(DEFAULT_BASE_MODEL) is not None:
            return DEFAULT_BASE_MODEL, "cache", None
        note = (
            f"{DEFAULT_BASE_MODEL} is not in the local Hugging Face cache, so the built-in tiny random model was "
            "trained: it checks the setup but cannot give feedback; pass --llm_base_model PATH_OR_NAME"
        )
        logger.info("%s", note)  # the record carries it; the CLI prints it once
        return TINY_RANDOM, "tiny-random", note

    folder = Path(name).expanduser()
    if folder.exists() or _looks_like_path(name):
        if not folder.is_dir():
            raise LLMError(
                f"base model folder {name} does not exist: pass a folder holding config.json or a model name"
            )
        if not (folder / "config.json").is_file():
            raise LLMError(f"base model folder {name} holds no config.json: pass a saved Hugging Face model folder")
        return str(folder.resolve()), "path", None

    if _cached_snapshot(name) is not None:
        return name, "cache", None
    if _offline():
        raise LLMError(
            f"base model {name} is not in the local Hugging Face cache and HF_HUB_OFFLINE is set: "
            "download it first or pass a local folder"
        )
    from huggingface_hub import snapshot_download

    logger.info("downloading base model %s from the Hugging Face hub", name)
    try:
        folder = Path(snapshot_download(name, cache_dir=_hub_cache_dir(), allow_patterns=_DOWNLOAD_PATTERNS))
        if not any(folder.glob("*.safetensors")):
            folder = Path(snapshot_download(name, cache_dir=_hub_cache_dir(), allow_patterns=["pytorch_model*.bin"]))
    except Exception as exc:  # noqa: BLE001 - network, auth, validation: all become one actionable line
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise LLMError(f"base model {name} could not be downloaded from the Hugging Face hub: {reason}") from exc
    if not _complete_snapshot(folder):
        raise LLMError(f"base model {name} has no config, tokenizer or weights on the Hugging Face hub")
    return name, "hub", None


def build_tiny_random(texts: list[str], seed: int = 0):
    """A tiny randomly initialised Llama and a byte-level BPE tokenizer trained on ``texts``; nothing is downloaded.

    It checks the training setup end to end; it cannot write useful feedback.
    """
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    backend = Tokenizer(models.BPE())
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    backend.decoder = decoders.ByteLevel()
    backend.post_processor = processors.ByteLevel(trim_offsets=False)
    trainer = trainers.BpeTrainer(
        vocab_size=TINY_VOCAB_SIZE,
        special_tokens=list(TINY_SPECIAL_TOKENS),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    backend.train_from_iterator([text for text in texts if text] or ["movement"], trainer=trainer)
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=backend,
        bos_token="<|im_start|>",
        eos_token="<|im_end|>",
        pad_token="<pad>",
        unk_token="<|endoftext|>",
        chat_template=CHATML_TEMPLATE,
        model_max_length=4096,
    )

    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=4,
        max_position_embeddings=4096,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        tie_word_embeddings=False,
        initializer_range=0.1,
    )
    _seed_everything(seed)
    model = LlamaForCausalLM(config)
    model.to(torch.float32)
    return model, tokenizer


def _local_folder(name_or_path: str, source: str) -> str:
    """The folder to load from: the path itself, or the model's snapshot folder in the local cache.

    Loading cached models from their snapshot folder keeps transformers off the network: ``from_pretrained(name,
    local_files_only=True)`` in transformers 5 still asks the hub for an ``adapter_config.json``.
    """
    if source not in {"cache", "hub"}:
        return name_or_path
    folder = _cached_snapshot(name_or_path)
    if folder is None:
        raise LLMError(
            f"base model {name_or_path} is not complete in the local Hugging Face cache ({_hub_cache_dir()}): "
            "download it again or pass a local folder"
        )
    return str(folder)


def _load_base_model(name_or_path: str, source: str):
    """The base model in float32 on the CPU, from a folder or the local cache (never the network)."""
    import torch
    from transformers import AutoModelForCausalLM

    folder = _local_folder(name_or_path, source)
    try:
        return AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32, local_files_only=True)
    except (OSError, ValueError, KeyError) as exc:
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise LLMError(f"base model {name_or_path} could not be loaded: {reason}") from exc


def _load_tokenizer(name_or_path: str, source: str):
    """The tokenizer of a folder or a cached model, with ChatML where it has no chat template."""
    from transformers import AutoTokenizer

    folder = _local_folder(name_or_path, source)
    try:
        tokenizer = AutoTokenizer.from_pretrained(folder, local_files_only=True)
    except (OSError, ValueError, KeyError) as exc:
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise LLMError(f"the tokenizer of {name_or_path} could not be loaded: {reason}") from exc
    if tokenizer.chat_template is None:
        logger.warning("%s has no chat template; using ChatML", name_or_path)
        tokenizer.chat_template = CHATML_TEMPLATE
    return tokenizer


# --------------------------------------------------------------------------- data


def _read_chat_jsonl(path: Path) -> list[list[dict]]:
    """The conversations of a chat JSONL file; every problem is an LLMError naming ``path:line``."""
    if not path.is_file():
        raise LLMError(f"training data {path} does not exist")
    conversations = []
    with path.open(encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            where = f"{path}:{number}"
            try:
                item = json.loads(line)
            except json.JSONDecodeError as exc:
                raise LLMError(f"{where}: not valid JSON ({exc.msg})") from exc
            messages = item.get("messages") if isinstance(item, dict) else None
            if not isinstance(messages, list) or not messages:
                raise LLMError(f'{where}: expected {{"messages": [{{"role": ..., "content": ...}}, ...]}}')
            for index, message in enumerate(messages):
                if not isinstance(message, dict) or message.get("role") not in ROLES:
                    raise LLMError(f"{where}: message {index} needs a role of system, user or assistant")
                if not isinstance(message.get("content"), str):
                    raise LLMError(f"{where}: message {index} needs a string content")
            if not any(message["role"] == "assistant" for message in messages):
                raise LLMError(f"{where}: no assistant turn in messages; every example needs the answer to learn")
            conversations.append([{"role": m["role"], "content": m["content"]} for m in messages])
    return conversations


def _render(tokenizer, messages: list[dict], add_generation_prompt: bool = False) -> str:
    text = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=add_generation_prompt)
    if not isinstance(text, str):  # some versions hand back a list for a single conversation
        text = text[0]
    return text


def _assistant_spans(tokenizer, messages: list[dict], full: str) -> list[tuple[int, int]]:
    """Character spans of the assistant turns in the rendered conversation ``full``.

    A turn spans from the end of the rendered prompt before it (with the generation prompt) to the end of the
    conversation rendered up to it, so the end-of-turn token is learned too. Where the template does not render
    prefixes consistently, the span is the message content found in ``full``.
    """
    spans = []
    search_from = 0
    for index, message in enumerate(messages):
        if message["role"] != "assistant":
            continue
        prompt = _render(tokenizer, messages[:index], add_generation_prompt=True) if index else ""
        upto = _render(tokenizer, messages[: index + 1])
        if upto.startswith(prompt) and full.startswith(upto) and len(upto) > len(prompt):
            spans.append((len(prompt), len(upto)))
            search_from = len(upto)
            continue
        start = full.find(message["content"], search_from)
        if start < 0 or not message["content"]:
            continue
        spans.append((start, start + len(message["content"])))
        search_from = start + len(message["content"])
    return spans


def _encode(tokenizer, conversations: list[list[dict]], max_length: int) -> tuple[list[dict], int, int]:
    """Token ids and labels (IGNORE_INDEX outside the assistant turns) per conversation.

    Returns ``(examples, truncated, dropped)``: examples longer than ``max_length`` are truncated and counted;
    those left without any assistant token are dropped (and counted in both).
    """
    examples, truncated, dropped = [], 0, 0
    for messages in conversations:
        full = _render(tokenizer, messages)
        spans = _assistant_spans(tokenizer, messages, full)
        encoding = tokenizer(full, add_special_tokens=False, return_offsets_mapping=True)
        ids = list(encoding["input_ids"])
        labels = [
            token if any(start < span_end and end > span_start for span_start, span_end in spans) else IGNORE_INDEX
            for token, (start, end) in zip(ids, encoding["offset_mapping"])
        ]
        if len(ids) > max_length:
            truncated += 1
            ids, labels = ids[:max_length], labels[:max_length]
        if sum(label != IGNORE_INDEX for label in labels[1:]) == 0:
            dropped += 1
            continue
        examples.append({"input_ids": ids, "labels": labels})
    return examples, truncated, dropped


def _collate(examples: list[dict], pad_id: int):
    import torch

    width = max(len(example["input_ids"]) for example in examples)
    input_ids = torch.full((len(examples), width), pad_id, dtype=torch.long)
    labels = torch.full((len(examples), width), IGNORE_INDEX, dtype=torch.long)
    attention_mask = torch.zeros((len(examples), width), dtype=torch.long)
    for row, example in enumerate(examples):
        length = len(example["input_ids"])
        input_ids[row, :length] = torch.tensor(example["input_ids"], dtype=torch.long)
        labels[row, :length] = torch.tensor(example["labels"], dtype=torch.long)
        attention_mask[row, :length] = 1
    return {"input_ids": input_ids, "labels": labels, "attention_mask": attention_mask}


def _loss_sum(model, batch) -> tuple[Any, int]:
    """Summed next-token cross entropy over the labelled tokens, and their count."""
    import torch.nn.functional as F

    logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
    logits = logits[:, :-1, :].float()
    labels = batch["labels"][:, 1:]
    loss = F.cross_entropy(
        logits.reshape(-1, logits.shape[-1]), labels.reshape(-1), ignore_index=IGNORE_INDEX, reduction="sum"
    )
    return loss, int((labels != IGNORE_INDEX).sum())


def _mean_loss(model, examples: list[dict], pad_id: int, batch_size: int) -> float:
    """Mean loss per assistant token over ``examples`` in eval mode (no dropout)."""
    import torch

    was_training = model.training
    model.eval()
    total, count = 0.0, 0
    with torch.no_grad():
        for start in range(0, len(examples), batch_size):
            loss, tokens = _loss_sum(model, _collate(examples[start : start + batch_size], pad_id))
            total += float(loss)
            count += tokens
    model.train(was_training)
    return total / max(count, 1)


# --------------------------------------------------------------------------- training


def _seed_everything(seed: int) -> None:
    import torch

    random.seed(seed)
    torch.manual_seed(seed)
    try:
        import numpy as np

        np.random.seed(seed)
    except ImportError:
        pass


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
    path.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")


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
    from peft import LoraConfig, TaskType, get_peft_model

    started = time.monotonic()
    train_path, output_root = Path(train_path), Path(output_root)
    train_conversations = _read_chat_jsonl(train_path)
    if not train_conversations:
        raise LLMError(f"training data {train_path} holds no examples")
    val_conversations: list[list[dict]] = []
    if val_path is not None and str(val_path):
        val_conversations = _read_chat_jsonl(Path(val_path))

    name_or_path, source, note = resolve_base_model(settings.base_model)
    threads_before = torch.get_num_threads()
    torch.set_num_threads(max(1, min(threads_before, os.cpu_count() or 1)))
    output_root.mkdir(parents=True, exist_ok=True)
    final, temp = _run_folder(output_root, _file_hash(train_path))
    try:
        temp.mkdir(parents=True)
        if source == "tiny-random":
            texts = [message["content"] for messages in train_conversations for message in messages]
            texts += list(ROLES)
            model, tokenizer = build_tiny_random(texts, seed=settings.seed)
            with _no_progress_bars():
                model.save_pretrained(temp / "base")
        else:
            model, tokenizer = _load_base_model(name_or_path, source), _load_tokenizer(name_or_path, source)
        tokenizer.save_pretrained(temp / "tokenizer")
        pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else (tokenizer.eos_token_id or 0)

        examples, truncated, dropped = _encode(tokenizer, train_conversations, settings.max_length)
        val_examples, val_truncated, val_dropped = _encode(tokenizer, val_conversations, settings.max_length)
        if truncated or val_truncated:
            logger.warning(
                "%d training and %d validation examples are longer than max_length=%d tokens and were truncated",
                truncated,
                val_truncated,
                settings.max_length,
            )
        if dropped or val_dropped:
            logger.warning(
                "%d training and %d validation examples kept no assistant token after truncation and were dropped",
                dropped,
                val_dropped,
            )
        if not examples:
            raise LLMError(
                f"no example of {train_path} keeps an assistant token within max_length={settings.max_length}: "
                "raise max_length"
            )

        _seed_everything(settings.seed)
        lora = LoraConfig(
            task_type=TaskType.CAUSAL_LM,
            r=settings.lora_r,
            lora_alpha=settings.lora_alpha,
            lora_dropout=settings.lora_dropout,
            target_modules="all-linear",
            bias="none",
        )
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=_PEFT_DEPRECATION, category=FutureWarning)
            model = get_peft_model(model, lora)
        trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
        total = sum(p.numel() for p in model.parameters())

        batches_per_epoch = math.ceil(len(examples) / settings.batch_size)
        steps = settings.max_steps or max(1, math.ceil(settings.epochs * batches_per_epoch))
        warmup = max(1, round(0.05 * steps)) if steps > 1 else 0
        logger.info(
            "training %s (%s) with LoRA r=%d: %d examples, %d steps, %d of %d parameters trainable",
            name_or_path,
            source,
            settings.lora_r,
            len(examples),
            steps,
            trainable,
            total,
        )

        log_lines: list[dict] = [
            {
                "type": "data",
                "examples": len(examples),
                "val_examples": len(val_examples),
                "truncated_examples": truncated,
                "val_truncated_examples": val_truncated,
                "dropped_examples": dropped,
                "val_dropped_examples": val_dropped,
                "max_length": settings.max_length,
            }
        ]
        eval_batch = max(1, settings.batch_size)
        before = _mean_loss(model, examples, pad_id, eval_batch)
        val_before = _mean_loss(model, val_examples, pad_id, eval_batch) if val_examples else None
        log_lines.append({"type": "eval", "step": 0, "train_loss": before, "val_loss": val_before})
        logger.info("loss before training: train %.4f, val %s", before, val_before)

        optimizer = torch.optim.AdamW(
            [p for p in model.parameters() if p.requires_grad], lr=settings.learning_rate, weight_decay=0.0
        )

        def factor(step: int) -> float:  # linear warm-up, then linear decay to zero
            if step < warmup:
                return (step + 1) / warmup
            return max(0.0, (steps - step) / max(1, steps - warmup))

        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, factor)
        generator = torch.Generator().manual_seed(settings.seed)
        queue: list[list[int]] = []  # batches of example indices; a new shuffle per epoch, short last batch
        losses: list[float] = []
        model.train()
        for step in range(1, steps + 1):
            if not queue:
                order = torch.randperm(len(examples), generator=generator).tolist()
                queue = [order[i : i + settings.batch_size] for i in range(0, len(order), settings.batch_size)]
            indices = queue.pop(0)
            loss_sum, tokens = _loss_sum(model, _collate([examples[i] for i in indices], pad_id))
            loss = loss_sum / max(tokens, 1)
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
                "steps": steps,
                "epoch": round(step / batches_per_epoch, 4),
                "loss": losses[-1],
                "learning_rate": learning_rate,
            }
            log_lines.append(line)
            if progress is not None:
                progress(dict(line))

        after = _mean_loss(model, examples, pad_id, eval_batch)
        val_after = _mean_loss(model, val_examples, pad_id, eval_batch) if val_examples else None
        log_lines.append({"type": "eval", "step": steps, "train_loss": after, "val_loss": val_after})
        logger.info("loss after training: train %.4f, val %s", after, val_after)

        # The embeddings are never trained or resized; saying so spares peft a hub look-up of the base config.
        model.save_pretrained(temp / "adapter", save_embedding_layers=False)
        with (temp / "training_log.jsonl").open("w", encoding="utf-8") as handle:
            for line in log_lines:
                handle.write(json.dumps(line) + "\n")
        record = TrainRecord(
            adapter_dir=str(final / "adapter"),
            base_model=name_or_path,
            base_model_source=source,
            base_model_note=note,
            examples=len(examples),
            val_examples=len(val_examples),
            truncated_examples=truncated,
            steps=steps,
            epochs=round(steps / batches_per_epoch, 4),
            trainable_parameters=trainable,
            total_parameters=total,
            first_loss=losses[0],
            last_loss=losses[-1],
            train_eval_loss_before=before,
            train_eval_loss_after=after,
            val_loss_before=val_before,
            val_loss_after=val_after,
            elapsed_s=round(time.monotonic() - started, 3),
            log_path=str(final / "training_log.jsonl"),
            settings=dataclasses.asdict(settings),
        )
        _write_json(temp / "record.json", record.to_dict())
        temp.rename(final)
    except BaseException:
        shutil.rmtree(temp, ignore_errors=True)
        raise
    finally:
        torch.set_num_threads(threads_before)
    logger.info("adapter written to %s", final)
    return record


# --------------------------------------------------------------------------- loading


def _run_dir(folder: str | os.PathLike) -> Path:
    """The run folder from either the run folder itself or its ``adapter/`` folder."""
    folder = Path(folder)
    if (folder / "record.json").is_file():
        return folder
    if folder.name == "adapter" and (folder.parent / "record.json").is_file():
        return folder.parent
    raise LLMError(f"{folder} is not a local training run: it holds no record.json")


def load_adapter(folder: str | os.PathLike):
    """The trained model (base + LoRA adapter, eval mode, CPU) and its tokenizer from a run folder."""
    require_extra()
    from peft import PeftModel

    run = _run_dir(folder)
    try:
        record = json.loads((run / "record.json").read_text(encoding="utf-8"))
        name_or_path, source = record["base_model"], record["base_model_source"]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise LLMError(f"{run / 'record.json'} is unreadable: {exc}") from exc
    if source == "tiny-random":
        if not (run / "base" / "config.json").is_file():
            raise LLMError(f"{run} lacks base/: the tiny random base model was not saved with the adapter")
        base = _load_base_model(str(run / "base"), "path")
    else:
        base = _load_base_model(name_or_path, source)
    tokenizer = _load_tokenizer(str(run / "tokenizer"), "path")
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=_PEFT_DEPRECATION, category=FutureWarning)
            model = PeftModel.from_pretrained(base, str(run / "adapter"))
    except (OSError, ValueError, KeyError) as exc:
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise LLMError(f"the adapter in {run} could not be loaded: {reason}") from exc
    model.eval()
    return model, tokenizer
