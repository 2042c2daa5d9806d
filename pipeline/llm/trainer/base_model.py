"""The base model to train: the default model, resolving ``"auto"``, finding models in the local Hugging Face cache
(never touching the network), downloading named ones, loading a model and its tokenizer, and the built-in tiny random
model that checks the setup offline."""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

from pipeline.errors import LLMError
from pipeline.llm.trainer.extra import seed_everything

logger = logging.getLogger(__name__)

DEFAULT_BASE_MODEL = "HuggingFaceTB/SmolLM2-135M-Instruct"
TINY_RANDOM = "tiny-random"

# ChatML, the format of the default base model; the tiny random model uses it too.
CHATML_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)
TINY_SPECIAL_TOKENS = ("<pad>", "<|endoftext|>", "<|im_start|>", "<|im_end|>")
TINY_VOCAB_SIZE = 1024

# Files a snapshot needs to be usable: a config, a tokenizer and weights.
_WEIGHT_PATTERNS = ("*.safetensors", "pytorch_model*.bin")
_DOWNLOAD_PATTERNS = ["*.json", "*.safetensors", "*.txt", "*.model", "*.jinja"]


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


def build_tiny_random(texts: list[str], seed: int = 0) -> tuple[Any, Any]:
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
    seed_everything(seed)
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


def load_base_model(name_or_path: str, source: str) -> Any:
    """The base model in float32 on the CPU, from a folder or the local cache (never the network)."""
    import torch
    from transformers import AutoModelForCausalLM

    folder = _local_folder(name_or_path, source)
    try:
        return AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32, local_files_only=True)
    except (OSError, ValueError, KeyError) as exc:
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise LLMError(f"base model {name_or_path} could not be loaded: {reason}") from exc


def load_tokenizer(name_or_path: str, source: str) -> Any:
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
