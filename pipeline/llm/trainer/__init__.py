"""Local LoRA fine-tuning of a causal language model on chat-format JSONL.

Each line of the training file is ``{"messages": [{"role": "system"|"user"|"assistant", "content": str}, ...]}``,
the format OpenAI fine-tuning accepts, checked as :func:`pipeline.llm.validate.check_chat_example` checks it. The
loss covers the assistant turns only. The heavy packages (torch, transformers, peft, accelerate) form the optional
training extra (``requirements-train.txt``); this package imports without them and imports them only inside the
functions that train or load.

A run writes one folder ``output_root/local-<UTC yyyymmdd-HHMMSS>-<hash of the train file>/`` holding ``adapter/``
(the LoRA weights), ``tokenizer/``, ``base/`` (only for the built-in tiny random model, so the adapter reloads
offline), ``training_log.jsonl`` (one line per optimiser step plus the evaluations) and ``record.json``.

Modules: :mod:`.extra` (the training extra), :mod:`.base_model` (choosing and loading the base model),
:mod:`.data` (reading and tokenising the data), :mod:`.loop` (training) and :mod:`.loading` (loading a run back).
"""

from __future__ import annotations

from pipeline.llm.trainer.base_model import DEFAULT_BASE_MODEL, TINY_RANDOM, build_tiny_random, resolve_base_model
from pipeline.llm.trainer.data import IGNORE_INDEX, encode_conversations, read_chat_jsonl
from pipeline.llm.trainer.extra import TRAIN_EXTRA, TRAIN_PACKAGES, missing_packages, require_extra
from pipeline.llm.trainer.loading import load_adapter
from pipeline.llm.trainer.loop import LocalTrainSettings, TrainRecord, mean_loss, train_local

__all__ = [
    "DEFAULT_BASE_MODEL",
    "IGNORE_INDEX",
    "TINY_RANDOM",
    "TRAIN_EXTRA",
    "TRAIN_PACKAGES",
    "LocalTrainSettings",
    "TrainRecord",
    "build_tiny_random",
    "encode_conversations",
    "load_adapter",
    "mean_loss",
    "missing_packages",
    "read_chat_jsonl",
    "require_extra",
    "resolve_base_model",
    "train_local",
]
